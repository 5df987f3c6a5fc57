//! The kubelets' pass: containers started, made ready, crashed and backed off as the readiness
//! rules and faults say; terminating pods stopped; volumes expanded.

use super::*;

impl Inner {
    /// The external resizer and the kubelet's online expansion, done at once: a bound claim
    /// whose request grew gets that capacity (kube-apiserver's resize admission already refused
    /// a claim whose StorageClass does not allow expansion).
    pub(super) fn expand_volumes(&self) {
        let claims: Vec<Arc<PersistentVolumeClaim>> = self.access.list(&self.types.pvcs);
        for claim in claims {
            let requested = claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .cloned();
            let Some(requested) = requested else { continue };
            let Some(status) = claim.status.as_ref() else {
                continue;
            };
            let capacity = status.capacity.as_ref().and_then(|c| c.get("storage"));
            let bigger = match (capacity, crate::validation::quantity_bytes(&requested.0)) {
                (Some(capacity), Some(wanted)) => {
                    crate::validation::quantity_bytes(&capacity.0).is_some_and(|have| have < wanted)
                }
                _ => false,
            };
            if status.phase.as_deref() != Some("Bound") || !bigger {
                continue;
            }
            let mut expanded = Arc::unwrap_or_clone(claim.clone());
            if let Some(status) = expanded.status.as_mut() {
                status
                    .capacity
                    .get_or_insert_with(Default::default)
                    .insert("storage".to_owned(), requested);
            }
            let _ = self.access.replace(
                &self.types.pvcs,
                &namespace_of(&claim.metadata),
                &name_of(&claim.metadata),
                &expanded,
                Subresource::Status,
                "volume-expander",
            );
        }
    }

    pub(super) fn kubelets(
        &self,
        nodes: &[Arc<Node>],
        failed: &BTreeSet<String>,
        now: Instant,
    ) -> Option<Instant> {
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        let host_ip: BTreeMap<String, String> = nodes
            .iter()
            .map(|n| {
                let ip = n
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_default();
                (name_of(&n.metadata), ip)
            })
            .collect();
        let mut next: Option<Instant> = None;
        let mut wake = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        let mut runtimes = lock(&self.runtimes);
        let live_uids: BTreeSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        runtimes.retain(|uid, _| live_uids.contains(uid));
        lock(&self.charons).retain(|uid, _| live_uids.contains(uid));
        lock(&self.terminating).retain(|uid, _| live_uids.contains(uid));

        // First advance every container model, then judge readiness (which may depend on
        // which pods of a group run), then report.
        let mut on_healthy_nodes: Vec<&Pod> = Vec::new();
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let (Some(uid), namespace, name) = (
                pod.metadata.uid.clone(),
                namespace_of(&pod.metadata),
                name_of(&pod.metadata),
            ) else {
                continue;
            };
            if failed.contains(&node) || !host_ip.contains_key(&node) {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                let mut terminating = lock(&self.terminating);
                let done_at = *terminating
                    .entry(uid.clone())
                    .or_insert(now + self.options.termination_delay);
                // Not held back by the budget: deletes are few, and a StatefulSet's replacement
                // pod waits on this one.
                if now >= done_at {
                    drop(terminating);
                    self.access
                        .store
                        .force_delete_pod(&namespace, &name, KUBELET);
                } else {
                    wake(done_at);
                }
                continue;
            }
            if !runtimes.contains_key(&uid) {
                // A Charon pod gets a loopback address its simulated Charon serves on.
                let ip = match self.start_charon(pod) {
                    Some(charon) => {
                        let ip = charon.ip.to_string();
                        lock(&self.charons).insert(uid.clone(), charon);
                        ip
                    }
                    None => {
                        let mut ip = lock(&self.next_ip);
                        *ip += 1;
                        format!("10.244.{}.{}", *ip / 250, *ip % 250 + 1)
                    }
                };
                runtimes.insert(uid.clone(), PodRuntime::new(pod, ip, now, &self.options));
            }
            let Some(runtime) = runtimes.get_mut(&uid) else {
                continue;
            };
            let mut faults = lock(&self.faults);
            let key = (namespace.clone(), name.clone());
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            let stale = faults.pods.get_mut(&key).is_some_and(|f| match &f.uid {
                None => {
                    f.uid = Some(pod_uid.clone());
                    false
                }
                Some(bound) => *bound != pod_uid,
            });
            if stale {
                faults.pods.remove(&key);
            }
            let bad_images = faults.bad_images.clone();
            let is_bad = |image: &str| bad_images.iter().any(|b| image.contains(b.as_str()));
            let init_steps = faults.init_steps.clone();
            let outcome = |name: &str, image: &str| {
                init_steps
                    .get(name)
                    .filter(|o| o.image.as_deref().is_none_or(|i| image.contains(i)))
                    .map(|o| (o.exit_code, o.message.clone()))
            };
            if let Some(at) = runtime.advance_init(now, &outcome, &self.options) {
                wake(at);
            }
            if let Some(at) =
                runtime.advance(now, faults.pods.get_mut(&key), &is_bad, &self.options)
            {
                wake(at);
            }
            faults.pods.retain(|_, f| !f.is_empty());
            on_healthy_nodes.push(pod);
        }

        // Which pods run, for the readiness rules.
        let running = |pod: &Pod| {
            pod.metadata
                .uid
                .as_ref()
                .and_then(|u| runtimes.get(u))
                .is_some_and(PodRuntime::running)
        };
        let mut running_in_group: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for pod in &on_healthy_nodes {
            if !running(pod) {
                continue;
            }
            for rule in &self.options.readiness_rules {
                if let Some(group) = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&rule.group_label))
                {
                    *running_in_group
                        .entry((
                            namespace_of(&pod.metadata),
                            rule.group_label.clone(),
                            group.clone(),
                        ))
                        .or_default() += 1;
                }
            }
        }
        let faults = lock(&self.faults).clone();
        let charons = lock(&self.charons);
        // A status waits for its node's kubelet's client, not for other nodes' pods.
        let mut clients = lock(&self.kubelet_clients);
        clients.retain(|node, _| host_ip.contains_key(node));
        let mut up_charons: BTreeSet<String> = BTreeSet::new();
        for pod in on_healthy_nodes {
            let namespace = namespace_of(&pod.metadata);
            let name = name_of(&pod.metadata);
            let Some(runtime) = pod.metadata.uid.as_ref().and_then(|u| runtimes.get(u)) else {
                continue;
            };
            let running_long_enough = runtime.containers.iter().all(|c| match &c.phase {
                kubelet::Phase::Running { since, .. } => {
                    let ready_at = *since + self.options.ready_delay;
                    if now < ready_at {
                        wake(ready_at);
                    }
                    now >= ready_at
                }
                _ => false,
            });
            let rules_allow = self.options.readiness_rules.iter().all(|rule| {
                let Some(group) = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&rule.group_label))
                else {
                    return true;
                };
                let needed = rule
                    .min_running_annotation
                    .as_ref()
                    .and_then(|a| pod.metadata.annotations.as_ref()?.get(a)?.parse().ok())
                    .unwrap_or(rule.min_running);
                running_in_group
                    .get(&(namespace.clone(), rule.group_label.clone(), group.clone()))
                    .copied()
                    .unwrap_or(0)
                    >= needed
            });
            let pod_faults = faults.of_pod(&namespace, &name);
            let unready = pod_faults.is_some_and(|f| f.unready);
            let mut charon_not_ready = pod_faults.and_then(|f| f.charon_not_ready);
            if let Some(charon) = pod.metadata.uid.as_ref().and_then(|u| charons.get(u)) {
                let grace = self.options.charon_peer_readiness;
                charon_not_ready =
                    charon.observe(runtime.running(), charon_not_ready, now.into_std(), grace);
                if let Some(grace) = grace {
                    // Charon checks its peers every slot; peers elsewhere change unseen here.
                    wake(now + grace / 4);
                }
                if let Some(uid) = pod.metadata.uid.clone() {
                    up_charons.insert(uid);
                }
            }
            let ready =
                running_long_enough && rules_allow && !unready && charon_not_ready.is_none();
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let status = runtime.status(
                pod.status.as_ref(),
                ready,
                host_ip.get(&node).map_or("", String::as_str),
                now,
                &self.options,
            );
            let may_write = pod.status.as_ref() != Some(&status)
                && match clients
                    .entry(node)
                    .or_insert_with(|| {
                        rate_limit::TokenBucket::full(
                            rate_limit::KUBELET_QPS,
                            rate_limit::KUBELET_BURST,
                            now,
                        )
                    })
                    .take(now)
                {
                    Ok(()) => true,
                    Err(due) => {
                        wake(due);
                        false
                    }
                };
            if may_write {
                let mut updated = pod.clone();
                updated.status = Some(status);
                if let Err(error) = self.access.replace(
                    &self.types.pods,
                    &namespace,
                    &name,
                    &updated,
                    Subresource::Status,
                    KUBELET,
                ) {
                    tracing::debug!(pod = %name, %error, "pod status not written; next pass");
                }
            }
            // Image pull back-off flips from ErrImagePull to ImagePullBackOff by time alone.
            if runtime
                .containers
                .iter()
                .any(|c| matches!(c.phase, kubelet::Phase::PullFailing { .. }))
            {
                wake(now + self.options.pull_retry);
            }
        }
        drop(runtimes);
        drop(clients);
        // A Charon whose pod is on a failed node (or not yet judged) answers no pings.
        for (uid, charon) in charons.iter() {
            if !up_charons.contains(uid) {
                charon.observe(false, None, now.into_std(), None);
            }
        }
        drop(charons);

        // Pods on failed nodes lose readiness (the node lifecycle controller marks them) and
        // otherwise stay as they were.
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if !failed.contains(&node) {
                continue;
            }
            let Some(mut status) = pod.status.clone() else {
                continue;
            };
            let mut changed = false;
            for condition in status.conditions.iter_mut().flatten() {
                if (condition.type_ == "Ready" || condition.type_ == "ContainersReady")
                    && condition.status != "False"
                {
                    condition.status = "False".into();
                    condition.reason = Some("NodeNotReady".into());
                    condition.last_transition_time =
                        Some(kubelet::time(k8s_openapi::jiff::Timestamp::now()));
                    changed = true;
                }
            }
            if changed {
                let mut updated = Arc::unwrap_or_clone(pod.clone());
                updated.status = Some(status);
                let _ = self.access.replace(
                    &self.types.pods,
                    &namespace_of(&pod.metadata),
                    &name_of(&pod.metadata),
                    &updated,
                    Subresource::Status,
                    NODE_CONTROLLER,
                );
            }
        }
        next
    }

    /// The simulated Charon of `pod`, when it runs Charon (an `obolnetwork/charon` image) with a
    /// readable lock and a share index label; `None` for any other pod.
    fn start_charon(&self, pod: &Pod) -> Option<charon::Charon> {
        let spec = pod.spec.as_ref()?;
        spec.containers.iter().find(|c| {
            c.image
                .as_deref()
                .is_some_and(|i| i.contains("obolnetwork/charon"))
        })?;
        let index: u32 = pod
            .metadata
            .labels
            .as_ref()?
            .get(charon::SHARE_INDEX_LABEL)?
            .parse()
            .ok()?;
        let lock_text = self.lock_of(pod)?;
        charon::Charon::start(self.options.p2p.clone(), self.site, &lock_text, index)
    }

    /// The `cluster-lock.json` a pod mounts, from its ConfigMap or Secret volume.
    fn lock_of(&self, pod: &Pod) -> Option<String> {
        let namespace = namespace_of(&pod.metadata);
        for volume in pod.spec.as_ref()?.volumes.iter().flatten() {
            let (kind, name, items) = match (&volume.config_map, &volume.secret) {
                (Some(map), _) => ("configmaps", map.name.clone(), map.items.clone()),
                (None, Some(secret)) => (
                    "secrets",
                    secret.secret_name.clone().unwrap_or_default(),
                    secret.items.clone(),
                ),
                _ => continue,
            };
            let key = items
                .iter()
                .flatten()
                .find(|item| item.path.ends_with("cluster-lock.json"))
                .map(|item| item.key.clone())
                .unwrap_or_else(|| "cluster-lock.json".to_owned());
            let rt = self.access.store.resolve("", "v1", kind)?;
            let Ok(object) = self.access.store.get(&rt, &namespace, &name) else {
                continue;
            };
            let text = if kind == "configmaps" {
                object["data"][&key].as_str().map(str::to_owned)
            } else {
                use base64::Engine as _;
                object["data"][&key]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|bytes| String::from_utf8(bytes).ok())
            };
            if let Some(text) = text.filter(|t| t.contains("cluster_definition")) {
                return Some(text);
            }
        }
        None
    }
}
