//! History: each committed change gets a resourceVersion, goes to the watchers as bytes, and
//! is recorded in the timeline (who did what, when); core Events are mirrored as events.k8s.io.

use super::*;

impl State {
    /// Assigns a resourceVersion, stores, indexes and publishes an object, then removes it if it
    /// is being deleted with no finalizers left.
    pub(super) fn commit(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        old: Option<&Value>,
    ) -> Value {
        self.resource_version += 1;
        let rv = self.resource_version;
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".to_owned(), json!(rv.to_string()));
        }
        let object_ref = (rt.storage_key(), namespace.to_owned(), name.to_owned());
        if let Some(old) = old {
            for owner in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(&object_ref);
                }
            }
        }
        for owner in owner_uids(&object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(object_ref.clone());
        }
        if let Some(uid) = metadata_str(&object, "uid") {
            self.by_uid.insert(uid.to_owned(), object_ref.clone());
        }
        self.objects
            .entry(rt.storage_key())
            .or_default()
            .insert((namespace.to_owned(), name.to_owned()), object.clone());
        let event_type = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(rt, namespace, event_type, rv, &object);
        self.record(rt, namespace, name, event_type, rv, old, Some(&object));
        if rt.kind == "CustomResourceDefinition" {
            self.register_crd(&object);
        }
        if rt.kind == "Event" && rt.group == "events.k8s.io" {
            self.mirror_event(namespace, name, &object);
        }
        let deleting = metadata_str(&object, "deletionTimestamp").is_some();
        if deleting && finalizers(&object).is_empty() && !awaits_kubelet(rt, &object) {
            self.remove(&object_ref);
        } else if deleting {
            self.progress_foreground(&object_ref);
        }
        object
    }

    pub(super) fn publish(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        event_type: EventType,
        rv: u64,
        object: &Value,
    ) {
        if rt.group == "rbac.authorization.k8s.io"
            || (rt.group.is_empty() && rt.plural == "serviceaccounts")
        {
            self.auth_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let api_version = rt.api_version();
        let json = serde_json::to_vec(self.presented(rt, object).as_ref()).unwrap_or_default();
        let event = Arc::new(WatchEvent {
            resource_version: rv,
            key: rt.storage_key(),
            namespace: namespace.to_owned(),
            event_type,
            json: json.into(),
            api_version,
            labels: object
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null),
        });
        self.history_bytes += event.json.len();
        self.history.push_back(event.clone());
        // The newest event stays whatever its size: a watch can always resume from the present.
        while self.history.len() > 1
            && (self.history.len() > self.history_limit
                || self.history_bytes > self.history_byte_limit)
        {
            if let Some(dropped) = self.history.pop_front() {
                self.history_bytes -= dropped.json.len();
                self.compacted = dropped.resource_version;
            }
        }
        // No receivers is normal (nobody watching).
        if let Some(watchers) = self.watch_channels.get(&event.key) {
            let _ = watchers.send(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// kube-apiserver serves one Event storage through both `v1` and `events.k8s.io/v1`; here
    /// they are stored apart, so an `events.k8s.io` Event is copied into `v1` (what `kubectl
    /// describe` and `kubectl get events` read), with the fields mapped as the server maps them.
    pub(super) fn mirror_event(&mut self, namespace: &str, name: &str, event: &Value) {
        let Some(core) = self.registry.get("", "v1", "events") else {
            return;
        };
        let field = |path: &str| event.pointer(path).cloned().unwrap_or(Value::Null);
        let first = field("/eventTime");
        let last = event
            .pointer("/series/lastObservedTime")
            .cloned()
            .unwrap_or_else(|| first.clone());
        // Whole seconds, as v1 Event timestamps are.
        let seconds = |t: &Value| {
            t.as_str()
                .map(|t| {
                    json!(format!(
                        "{}Z",
                        t.split('.').next().unwrap_or(t).trim_end_matches('Z')
                    ))
                })
                .unwrap_or(Value::Null)
        };
        let mirrored = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": field("/regarding"),
            "related": field("/related"),
            "reason": field("/reason"),
            "message": field("/note"),
            "type": field("/type"),
            "action": field("/action"),
            "source": {"component": field("/reportingController")},
            "reportingComponent": field("/reportingController"),
            "reportingInstance": field("/reportingInstance"),
            "firstTimestamp": seconds(&first),
            "lastTimestamp": seconds(&last),
            "eventTime": first,
            "count": event.pointer("/series/count").cloned().unwrap_or(json!(1)),
        });
        let old = self.get(&core, namespace, name).ok().cloned();
        let mut object = mirrored;
        let metadata = object["metadata"]
            .as_object_mut()
            .cloned()
            .unwrap_or_default();
        match &old {
            Some(previous) => {
                let mut meta = previous
                    .get("metadata")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.remove("resourceVersion");
                    m.remove("managedFields");
                }
                object["metadata"] = meta;
            }
            None => {
                let mut meta = metadata;
                meta.insert("uid".to_owned(), json!(self.new_uid()));
                meta.insert("creationTimestamp".to_owned(), json!(now()));
                object["metadata"] = Value::Object(meta);
            }
        }
        self.commit(&core, namespace, name, object, old.as_ref());
    }

    /// Appends a write, and a readiness change for pods, to the timeline.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        event_type: EventType,
        rv: u64,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let at = self.started.elapsed();
        self.timeline.push(TimelineEntry {
            at,
            resource_version: rv,
            change: Change::Write {
                verb: event_type.as_str(),
                resource: rt.qualified_plural(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                actor: self.actor.clone(),
                client: self.client.clone(),
            },
        });
        if rt.kind != "Pod" || !rt.group.is_empty() {
            return;
        }
        let was = old.is_some_and(pod_ready);
        let is = new.is_some_and(pod_ready);
        if was != is {
            let labels = new
                .or(old)
                .and_then(|o| o.pointer("/metadata/labels"))
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            self.timeline.push(TimelineEntry {
                at,
                resource_version: rv,
                change: Change::Readiness {
                    namespace: namespace.to_owned(),
                    pod: name.to_owned(),
                    ready: is,
                    labels,
                    actor: self.actor.clone(),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::support::*;

    #[test]
    fn a_watch_from_a_compacted_resource_version_is_gone() {
        let store = store();
        let rt = resource(&store, "", "v1", "configmaps");
        config_map(&store, "a", None);
        let second = config_map(&store, "b", None);
        let version: u64 = second["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap();
        let (backlog, _) = store.watch_from(&rt.storage_key(), version - 1).unwrap();
        assert_eq!(backlog.len(), 1, "the change after version - 1 is kept");
        store.compact(version);
        let error = store
            .watch_from(&rt.storage_key(), version - 1)
            .err()
            .unwrap();
        assert_eq!((error.code, error.reason), (410, "Expired"));
        assert!(store.watch_from(&rt.storage_key(), version).is_ok());
    }

    #[test]
    fn history_beyond_its_byte_bound_is_gone() {
        let store = super::super::Store::bounded(1_000, 600);
        let rt = resource(&store, "", "v1", "configmaps");
        let first = config_map(&store, "a", None);
        let first: u64 = first["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap();
        for name in ["b", "c", "d", "e", "f"] {
            config_map(&store, name, None);
        }
        let (events, bytes) = store.history_size();
        assert!(
            bytes <= 600 && events < 6,
            "{events} events, {bytes} bytes kept"
        );
        let error = store.watch_from(&rt.storage_key(), first).err().unwrap();
        assert_eq!((error.code, error.reason), (410, "Expired"));
        let (newest, _) = store.history_size();
        assert!(newest >= 1, "the newest event is always kept");
    }

    #[test]
    fn every_write_is_in_the_timeline_with_who_made_it() {
        let store = store();
        let before = store.timeline_len();
        config_map(&store, "a", None);
        let entries = store.timeline_since(before);
        let writes: Vec<_> = entries
            .iter()
            .filter_map(|e| match &e.change {
                crate::timeline::Change::Write {
                    verb,
                    resource,
                    name,
                    actor,
                    ..
                } => Some((*verb, resource.as_str(), name.as_str(), actor.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(writes, vec![("ADDED", "configmaps", "a", "tester")]);
    }
}
