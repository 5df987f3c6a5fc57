//! Deletion and garbage collection: grace periods and finalizers, orphan, background and
//! foreground propagation over ownerReferences, namespaces emptied before they go, and
//! evictions judged against PodDisruptionBudgets.

use super::*;

impl State {
    pub(super) fn resource_type_for(&self, key: &StorageKey) -> Option<Arc<ResourceType>> {
        self.registry
            .all()
            .find(|rt| &rt.storage_key() == key)
            .cloned()
    }

    /// Removes an object for good, then collects what that orphans.
    pub(super) fn remove(&mut self, object_ref: &ObjectRef) {
        let Some(object) = self
            .objects
            .get_mut(&object_ref.0)
            .and_then(|objects| objects.remove(&(object_ref.1.clone(), object_ref.2.clone())))
        else {
            return;
        };
        let Some(rt) = self.resource_type_for(&object_ref.0) else {
            return;
        };
        self.resource_version += 1;
        let rv = self.resource_version;
        let mut gone = object.clone();
        if let Some(metadata) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".to_owned(), json!(rv.to_string()));
        }
        self.publish(&rt, &object_ref.1, EventType::Deleted, rv, &gone);
        self.record(
            &rt,
            &object_ref.1,
            &object_ref.2,
            EventType::Deleted,
            rv,
            Some(&object),
            None,
        );
        for owner in owner_uids(&object) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(object_ref);
            }
            if let Some(owner_ref) = self.by_uid.get(&owner).cloned() {
                self.progress_foreground(&owner_ref);
            }
        }
        if rt.kind == "CustomResourceDefinition" {
            self.unregister_crd(&object);
        }
        if rt.kind == "Namespace" {
            self.delete_namespace_contents(&object_ref.2);
        }
        let Some(uid) = metadata_str(&object, "uid").map(str::to_owned) else {
            return;
        };
        self.by_uid.remove(&uid);
        let orphans: Vec<ObjectRef> = self.dependents.remove(&uid).into_iter().flatten().collect();
        for dependent in orphans {
            let Some(dependent_object) = self.lookup(&dependent).cloned() else {
                continue;
            };
            let owners_alive = owner_uids(&dependent_object)
                .iter()
                .any(|u| self.by_uid.contains_key(u));
            if !owners_alive {
                self.begin_delete(&dependent, "Background", None);
            }
        }
    }

    pub(super) fn lookup(&self, object_ref: &ObjectRef) -> Option<&Value> {
        self.objects
            .get(&object_ref.0)?
            .get(&(object_ref.1.clone(), object_ref.2.clone()))
    }

    /// Marks an object deleted: removed at once without finalizers, else given a
    /// deletionTimestamp and left for its finalizers. A pod bound to a node is left terminating
    /// for its kubelet unless `grace` is `Some(0)` (a force delete).
    pub(super) fn begin_delete(
        &mut self,
        object_ref: &ObjectRef,
        propagation: &str,
        grace: Option<i64>,
    ) {
        let Some(mut object) = self.lookup(object_ref).cloned() else {
            return;
        };
        let Some(rt) = self.resource_type_for(&object_ref.0) else {
            return;
        };
        let bound_pod = rt.kind == "Pod"
            && rt.group.is_empty()
            && object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
        let grace = if bound_pod {
            grace.unwrap_or_else(|| {
                object
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            })
        } else {
            0
        };
        let has_dependents = metadata_str(&object, "uid")
            .and_then(|uid| self.dependents.get(uid))
            .is_some_and(|d| !d.is_empty());
        let mut extra_finalizer = None;
        if propagation == "Foreground" && has_dependents {
            extra_finalizer = Some("foregroundDeletion");
        }
        if propagation == "Orphan" && has_dependents {
            extra_finalizer = Some("orphan");
        }
        let mut current = finalizers(&object);
        if let Some(f) = extra_finalizer
            && !current.iter().any(|c| c == f)
        {
            current.push(f.to_owned());
        }
        if current.is_empty() && grace == 0 {
            self.remove(object_ref);
            return;
        }
        let already_deleting = metadata_str(&object, "deletionTimestamp").is_some();
        let current_grace = object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        // A second delete only matters when it adds a finalizer or shortens the grace period.
        if already_deleting && extra_finalizer.is_none() && current_grace.is_none_or(|g| g <= grace)
        {
            return;
        }
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata
                .entry("deletionTimestamp")
                .or_insert_with(|| json!(now()));
            metadata.insert("deletionGracePeriodSeconds".to_owned(), json!(grace));
            if current.is_empty() {
                metadata.remove("finalizers");
            } else {
                metadata.insert("finalizers".to_owned(), json!(current));
            }
        }
        let old = self.lookup(object_ref).cloned();
        self.commit(&rt, &object_ref.1, &object_ref.2, object, old.as_ref());
        match extra_finalizer {
            Some("foregroundDeletion") => {
                let uid = metadata_str(self.lookup(object_ref).unwrap_or(&Value::Null), "uid")
                    .map(str::to_owned);
                let dependents: Vec<ObjectRef> = uid
                    .and_then(|u| self.dependents.get(&u).cloned())
                    .into_iter()
                    .flatten()
                    .collect();
                for dependent in dependents {
                    self.begin_delete(&dependent, "Background", None);
                }
            }
            Some("orphan") => self.orphan_dependents(object_ref),
            _ => {}
        }
    }

    /// Removes the owner reference to `owner` from its dependents, then its `orphan` finalizer.
    pub(super) fn orphan_dependents(&mut self, owner: &ObjectRef) {
        let Some(uid) = self
            .lookup(owner)
            .and_then(|o| metadata_str(o, "uid"))
            .map(str::to_owned)
        else {
            return;
        };
        let dependents: Vec<ObjectRef> = self
            .dependents
            .get(&uid)
            .cloned()
            .into_iter()
            .flatten()
            .collect();
        for dependent in dependents {
            let Some(old) = self.lookup(&dependent).cloned() else {
                continue;
            };
            let Some(rt) = self.resource_type_for(&dependent.0) else {
                continue;
            };
            let mut updated = old.clone();
            if let Some(refs) = updated
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
            }
            self.commit(&rt, &dependent.1, &dependent.2, updated, Some(&old));
        }
        self.drop_finalizer(owner, "orphan");
    }

    /// Completes a foreground deletion once its last dependent is gone.
    pub(super) fn progress_foreground(&mut self, owner: &ObjectRef) {
        let Some(object) = self.lookup(owner) else {
            return;
        };
        if !finalizers(object).iter().any(|f| f == "foregroundDeletion") {
            return;
        }
        let remaining = metadata_str(object, "uid")
            .and_then(|uid| self.dependents.get(uid))
            .is_some_and(|d| !d.is_empty());
        if !remaining {
            self.drop_finalizer(owner, "foregroundDeletion");
        }
    }

    pub(super) fn drop_finalizer(&mut self, object_ref: &ObjectRef, finalizer: &str) {
        let Some(old) = self.lookup(object_ref).cloned() else {
            return;
        };
        let Some(rt) = self.resource_type_for(&object_ref.0) else {
            return;
        };
        let mut updated = old.clone();
        if let Some(list) = updated
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f.as_str() != Some(finalizer));
        }
        self.commit(&rt, &object_ref.1, &object_ref.2, updated, Some(&old));
    }

    pub(super) fn delete_namespace_contents(&mut self, namespace: &str) {
        let refs: Vec<ObjectRef> = self
            .objects
            .iter()
            .flat_map(|(key, objects)| {
                objects
                    .keys()
                    .filter(|(ns, _)| ns == namespace)
                    .map(move |(ns, name)| (key.clone(), ns.clone(), name.clone()))
            })
            .collect();
        for object_ref in refs {
            self.begin_delete(&object_ref, "Background", None);
        }
    }

    pub(super) fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let object = self.get(rt, namespace, name)?.clone();
        if let Some(uid) = &options.precondition_uid
            && metadata_str(&object, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    metadata_str(&object, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &options.precondition_resource_version
            && metadata_str(&object, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if options.dry_run {
            return Ok(object);
        }
        let object_ref = (rt.storage_key(), namespace.to_owned(), name.to_owned());
        let propagation = options.propagation.as_deref().unwrap_or("Background");
        if !matches!(propagation, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::bad_request(format!(
                "unknown propagationPolicy {propagation:?}"
            )));
        }
        self.begin_delete(&object_ref, propagation, options.grace_period_seconds);
        Ok(self.lookup(&object_ref).cloned().unwrap_or(object))
    }

    pub(super) fn evict(&mut self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let pods_rt = self
            .registry
            .get("", "v1", "pods")
            .expect("pods are built in");
        let pdb_rt = self
            .registry
            .get("policy", "v1", "poddisruptionbudgets")
            .expect("PDBs are built in");
        let pod = self.get(&pods_rt, namespace, name)?.clone();
        let is_healthy = pod_ready;
        let pods: Vec<Value> = self
            .objects
            .get(&pods_rt.storage_key())
            .map(|all| {
                all.iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|(_, p)| p.clone())
                    .collect()
            })
            .unwrap_or_default();
        let pdbs: Vec<Value> = self
            .objects
            .get(&pdb_rt.storage_key())
            .map(|all| {
                all.iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|(_, p)| p.clone())
                    .collect()
            })
            .unwrap_or_default();
        for pdb in pdbs {
            let Some(selector) = pdb.pointer("/spec/selector") else {
                continue;
            };
            if !label_selector_matches(selector, &pod) {
                continue;
            }
            let matching: Vec<&Value> = pods
                .iter()
                .filter(|p| label_selector_matches(selector, p))
                .collect();
            let expected = matching.len() as i64;
            let healthy = matching.iter().filter(|p| is_healthy(p)).count() as i64;
            let desired = desired_healthy(&pdb, expected);
            // Evicting a healthy pod costs one healthy pod; an unhealthy one costs nothing but is
            // only allowed while the budget holds (the IfHealthyBudget policy).
            let after = if is_healthy(&pod) {
                healthy - 1
            } else {
                healthy
            };
            if after < desired {
                return Err(ApiError::too_many_requests(format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {desired} healthy pods and has {healthy} currently",
                    metadata_str(&pdb, "name").unwrap_or_default()
                ))
                .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {} needs {desired} healthy pods and has {healthy} currently", metadata_str(&pdb, "name").unwrap_or_default())}]})));
            }
        }
        let object_ref = (pods_rt.storage_key(), namespace.to_owned(), name.to_owned());
        self.begin_delete(&object_ref, "Background", None);
        Ok(())
    }
}

/// A deleted pod bound to a node stays, terminating, until its kubelet confirms it stopped.
pub(super) fn awaits_kubelet(rt: &ResourceType, object: &Value) -> bool {
    rt.kind == "Pod"
        && rt.group.is_empty()
        && object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

#[cfg(test)]
mod tests {
    use super::super::support::*;
    use super::*;

    fn dependents_after(propagation: Option<&str>) -> Option<Value> {
        let store = store();
        let rt = resource(&store, "", "v1", "configmaps");
        let owner = config_map(&store, "owner", None);
        config_map(&store, "dependent", Some(&owner));
        store
            .delete(&rt, "default", "owner", &deleter(propagation))
            .unwrap();
        assert!(store.get(&rt, "default", "owner").is_err() || propagation == Some("Foreground"));
        store.get(&rt, "default", "dependent").ok()
    }

    #[test]
    fn background_deletion_takes_the_dependents_and_orphan_leaves_them_ownerless() {
        assert!(dependents_after(None).is_none());
        assert!(dependents_after(Some("Background")).is_none());
        let orphan = dependents_after(Some("Orphan")).expect("an orphan stays");
        assert!(
            orphan["metadata"]
                .get("ownerReferences")
                .is_none_or(|o| o.as_array().is_some_and(Vec::is_empty))
        );
    }

    #[test]
    fn a_delete_naming_another_uid_is_refused() {
        let store = store();
        let rt = resource(&store, "", "v1", "configmaps");
        config_map(&store, "c", None);
        let mut options = deleter(None);
        options.precondition_uid = Some("not-its-uid".into());
        let error = store.delete(&rt, "default", "c", &options).unwrap_err();
        assert_eq!(error.code, 409);
        assert!(store.get(&rt, "default", "c").is_ok());
    }

    #[test]
    fn an_eviction_that_would_break_a_budget_is_refused_with_429() {
        let store = store();
        let pods = resource(&store, "", "v1", "pods");
        let budgets = resource(&store, "policy", "v1", "poddisruptionbudgets");
        store
            .create(
                &budgets,
                "default",
                json!({"metadata": {"name": "b"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}}),
                &writer("t"),
            )
            .unwrap();
        store
            .create(
                &pods,
                "default",
                json!({"metadata": {"name": "p", "labels": {"app": "x"}},
                       "spec": {"containers": [{"name": "c", "image": "i"}]}}),
                &writer("t"),
            )
            .unwrap();
        let error = store
            .evict("default", "p", "drainer", "kubectl/1.0")
            .unwrap_err();
        assert_eq!(error.code, 429, "{}", error.message);
        assert!(store.get(&pods, "default", "p").is_ok());
    }
}
