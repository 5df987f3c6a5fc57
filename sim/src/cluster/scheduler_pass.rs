//! The scheduler's pass: each pending pod bound to a node that fits (affinity, spread,
//! tolerations, the zone its volumes are pinned to; the choice is in `scheduler`).

use super::*;

impl Inner {
    pub(super) fn schedule(
        &self,
        nodes: &[Arc<Node>],
        node_ready: &dyn Fn(&Node) -> bool,
        budget: &Budget,
    ) {
        // Nodes are few: the scheduler's plain copies cost nothing next to the pods.
        let nodes: Vec<Node> = nodes.iter().map(|n| Node::clone(n)).collect();
        let nodes = nodes.as_slice();
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        let pending: Vec<&Pod> = pods
            .iter()
            .map(AsRef::as_ref)
            .filter(|p: &&Pod| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let claims: Vec<Arc<PersistentVolumeClaim>> = self.access.list(&self.types.pvcs);
        // Shared, not copied: a deep copy of every placed pod per pass was most of a pass's
        // time at thousands of pods.
        let mut placed_pods = scheduler::PlacedIndex::default();
        for p in &pods {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                placed_pods.add(p.clone(), node);
            }
        }
        // Claims by (namespace, name), once per pass: looking through every claim for each
        // pending pod was quadratic (12,000 pods and claims: minutes per pass).
        let claims_by_name: HashMap<(&str, &str), &Arc<PersistentVolumeClaim>> = claims
            .iter()
            .map(|c| {
                (
                    (
                        c.metadata.namespace.as_deref().unwrap_or_default(),
                        c.metadata.name.as_deref().unwrap_or_default(),
                    ),
                    c,
                )
            })
            .collect();
        for pod in pending {
            let namespace = namespace_of(&pod.metadata);
            let claim_names: Vec<String> = pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.clone())
                })
                .collect();
            let pod_claims: Vec<&Arc<PersistentVolumeClaim>> = claim_names
                .iter()
                .filter_map(|name| claims_by_name.get(&(namespace.as_str(), name.as_str())))
                .copied()
                .collect();
            let volume_zones: BTreeSet<String> = pod_claims
                .iter()
                .filter_map(|c| {
                    c.metadata
                        .annotations
                        .as_ref()?
                        .get(VOLUME_ZONE_ANNOTATION)
                        .cloned()
                })
                .collect();

            let world = World {
                nodes,
                placed: &placed_pods,
                ready: node_ready,
                volume_zones: &volume_zones,
            };
            let decision = scheduler::schedule(pod, &world);
            let mut updated = pod.clone();
            let condition = match &decision {
                Ok(_) => PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(kubelet::time(k8s_openapi::jiff::Timestamp::now())),
                    ..PodCondition::default()
                },
                Err(misfits) => PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(scheduler::unschedulable_message(nodes.len(), misfits)),
                    last_transition_time: Some(kubelet::time(k8s_openapi::jiff::Timestamp::now())),
                    ..PodCondition::default()
                },
            };
            let previous = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
            let unchanged = previous
                .is_some_and(|p| p.status == condition.status && p.message == condition.message);
            let status = updated.status.get_or_insert_with(Default::default);
            status.phase = Some("Pending".into());
            let mut conditions: Vec<PodCondition> = status
                .conditions
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.type_ != "PodScheduled")
                .collect();
            conditions.push(if unchanged {
                previous.cloned().unwrap_or(condition)
            } else {
                condition
            });
            status.conditions = Some(conditions);
            let name = name_of(&pod.metadata);
            // The binding (which marks the pod scheduled) and the volumes' zone; or a new reason it
            // cannot be.
            let writes = match &decision {
                Ok(_) => 1 + pod_claims.len(),
                Err(_) => usize::from(!unchanged),
            };
            if !budget.spend(writes) {
                continue;
            }
            match decision {
                Ok(node) => {
                    let mut bound = updated.clone();
                    if let Some(spec) = bound.spec.as_mut() {
                        spec.node_name = Some(node.clone());
                    }
                    // The binding (pods/binding) alone: the API server marks the pod
                    // PodScheduled in the same write, as kube-apiserver's BindingREST does.
                    match self
                        .access
                        .store
                        .bind(&namespace, &name, &node, SCHEDULER, SCHEDULER)
                    {
                        Ok(_) => {
                            self.pin_volumes(nodes, &namespace, &pod_claims, &node);
                            placed_pods.add(Arc::new(bound), node);
                        }
                        Err(error) => {
                            tracing::debug!(pod = %name, %error, "binding failed; next pass")
                        }
                    }
                }
                Err(_) if !unchanged => {
                    let _ = self.access.replace(
                        &self.types.pods,
                        &namespace,
                        &name,
                        &updated,
                        Subresource::Status,
                        SCHEDULER,
                    );
                }
                Err(_) => {}
            }
        }
    }

    /// Records the zone of a pod's first node on its claims: the volume now lives there.
    pub(super) fn pin_volumes(
        &self,
        nodes: &[Node],
        namespace: &str,
        claims: &[&Arc<PersistentVolumeClaim>],
        node: &str,
    ) {
        let Some(zone) = nodes
            .iter()
            .find(|n| name_of(&n.metadata) == node)
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        else {
            return;
        };
        for claim in claims.iter().copied() {
            if claim
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(VOLUME_ZONE_ANNOTATION))
            {
                continue;
            }
            let mut pinned = Arc::unwrap_or_clone(claim.clone());
            let annotations = pinned
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new);
            annotations.insert(VOLUME_ZONE_ANNOTATION.into(), zone.clone());
            annotations.insert("volume.kubernetes.io/selected-node".into(), node.to_owned());
            let _ = self.access.replace(
                &self.types.pvcs,
                namespace,
                &name_of(&claim.metadata),
                &pinned,
                Subresource::Main,
                SCHEDULER,
            );
        }
    }
}
