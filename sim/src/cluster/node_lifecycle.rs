//! The node lifecycle controller and pod garbage collection: nodes made (and failed, tainted
//! unreachable or out of service as faults say), their pods marked and, once a node is out of
//! service, removed.

use super::*;

impl Inner {
    pub(super) fn create_nodes(&self) {
        let zones = self.options.zones.max(1);
        for index in 0..self.options.nodes {
            let zone = ClusterOptions::zone_name(index % zones);
            let name = format!("sim-{zone}-{}", index / zones + 1);
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        (ZONE_LABEL.to_owned(), zone.clone()),
                        (
                            "topology.kubernetes.io/region".to_owned(),
                            "sim-region".to_owned(),
                        ),
                        (HOSTNAME_LABEL.to_owned(), name.clone()),
                        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                        ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                        (
                            "node.kubernetes.io/instance-type".to_owned(),
                            "sim.large".to_owned(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec::default()),
                status: None,
            };
            if let Err(error) = self
                .access
                .create(&self.types.nodes, "", &node, NODE_CONTROLLER)
            {
                tracing::warn!(node = %name, %error, "cannot create a simulated node");
            }
        }
    }

    /// Node status and taints follow the node's health.
    pub(super) fn node_lifecycle(&self, failed: &BTreeSet<String>) -> Vec<Arc<Node>> {
        let nodes: Vec<Arc<Node>> = self.access.list(&self.types.nodes);
        for (index, node) in nodes.iter().enumerate() {
            let name = name_of(&node.metadata);
            let healthy = !failed.contains(&name);
            let mut updated = Arc::unwrap_or_clone(node.clone());
            let previous = node.status.clone().unwrap_or_default();
            let ready_before = previous
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status.clone());
            let ready_now = if healthy { "True" } else { "Unknown" };
            let transition = if ready_before.as_deref() == Some(ready_now) {
                previous
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Ready")
                    .and_then(|c| c.last_transition_time.clone())
            } else {
                None
            }
            .unwrap_or_else(|| kubelet::time(k8s_openapi::jiff::Timestamp::now()));
            let pressure = |type_: &str, reason: &str| NodeCondition {
                type_: type_.to_owned(),
                status: if healthy { "False" } else { "Unknown" }.to_owned(),
                reason: Some(if healthy {
                    reason.to_owned()
                } else {
                    "NodeStatusUnknown".to_owned()
                }),
                message: Some(if healthy {
                    format!(
                        "kubelet has {}",
                        reason.trim_start_matches("KubeletHas").to_lowercase()
                    )
                } else {
                    "Kubelet stopped posting node status.".to_owned()
                }),
                last_transition_time: Some(transition.clone()),
                last_heartbeat_time: Some(transition.clone()),
            };
            let allocatable = BTreeMap::from([
                ("cpu".to_owned(), Quantity(self.options.node_cpu.clone())),
                (
                    "memory".to_owned(),
                    Quantity(self.options.node_memory.clone()),
                ),
                (
                    "pods".to_owned(),
                    Quantity(self.options.node_pods.to_string()),
                ),
                ("ephemeral-storage".to_owned(), Quantity("100Gi".to_owned())),
            ]);
            updated.status = Some(NodeStatus {
                allocatable: Some(allocatable.clone()),
                capacity: Some(allocatable),
                conditions: Some(vec![
                    pressure("MemoryPressure", "KubeletHasSufficientMemory"),
                    pressure("DiskPressure", "KubeletHasNoDiskPressure"),
                    pressure("PIDPressure", "KubeletHasSufficientPID"),
                    NodeCondition {
                        type_: "Ready".into(),
                        status: ready_now.into(),
                        reason: Some(
                            if healthy {
                                "KubeletReady"
                            } else {
                                "NodeStatusUnknown"
                            }
                            .into(),
                        ),
                        message: Some(
                            if healthy {
                                "kubelet is posting ready status"
                            } else {
                                "Kubelet stopped posting node status."
                            }
                            .into(),
                        ),
                        last_transition_time: Some(transition.clone()),
                        last_heartbeat_time: Some(transition),
                    },
                ]),
                addresses: Some(vec![
                    k8s_openapi::api::core::v1::NodeAddress {
                        type_: "InternalIP".into(),
                        address: format!("10.0.{}.{}", index / 250, index % 250 + 1),
                    },
                    k8s_openapi::api::core::v1::NodeAddress {
                        type_: "Hostname".into(),
                        address: name.clone(),
                    },
                ]),
                node_info: Some(NodeSystemInfo {
                    architecture: "amd64".into(),
                    container_runtime_version: "containerd://2.0.0".into(),
                    kubelet_version: "v1.33.0-dvt-sim".into(),
                    kube_proxy_version: "v1.33.0-dvt-sim".into(),
                    operating_system: "linux".into(),
                    os_image: "dvt-sim".into(),
                    kernel_version: "6.1.0".into(),
                    boot_id: String::new(),
                    machine_id: String::new(),
                    system_uuid: String::new(),
                    swap: None,
                }),
                ..previous.clone()
            });
            let mut taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let had_unreachable = taints.iter().any(|t| t.key == UNREACHABLE_TAINT);
            if healthy {
                taints.retain(|t| t.key != UNREACHABLE_TAINT);
            } else if !had_unreachable {
                for effect in ["NoSchedule", "NoExecute"] {
                    taints.push(Taint {
                        key: UNREACHABLE_TAINT.into(),
                        effect: effect.into(),
                        time_added: Some(kubelet::time(k8s_openapi::jiff::Timestamp::now())),
                        value: None,
                    });
                }
            }
            let mut with_taints = Arc::unwrap_or_clone(node.clone());
            with_taints
                .spec
                .get_or_insert_with(NodeSpec::default)
                .taints = (!taints.is_empty()).then_some(taints);
            if with_taints.spec != node.spec
                && let Err(error) = self.access.replace(
                    &self.types.nodes,
                    "",
                    &name,
                    &with_taints,
                    Subresource::Main,
                    NODE_CONTROLLER,
                )
            {
                tracing::debug!(node = %name, %error, "node taints not updated; next pass");
            }
            if updated.status != node.status
                && let Err(error) = self.access.replace(
                    &self.types.nodes,
                    "",
                    &name,
                    &updated,
                    Subresource::Status,
                    if healthy { KUBELET } else { NODE_CONTROLLER },
                )
            {
                tracing::debug!(node = %name, %error, "node status not updated; next pass");
            }
        }
        self.access.list(&self.types.nodes)
    }

    /// Pods whose node is gone, or out of service and not ready, are removed (PodGC).
    pub(super) fn pod_gc(&self, nodes: &[Arc<Node>], failed: &BTreeSet<String>) {
        let by_name: BTreeMap<String, &Node> = nodes
            .iter()
            .map(|n| (name_of(&n.metadata), n.as_ref()))
            .collect();
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        for pod in pods {
            let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let out_of_service = by_name.get(&node_name).is_some_and(|node| {
                failed.contains(&node_name)
                    && node
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
            });
            if !by_name.contains_key(&node_name) || out_of_service {
                self.access.store.force_delete_pod(
                    &namespace_of(&pod.metadata),
                    &name_of(&pod.metadata),
                    POD_GC,
                );
            }
        }
    }
}
