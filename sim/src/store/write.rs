//! Writes: create, replace (PUT), patch (merge, strategic, JSON and server-side apply) and
//! the update rules they share (resourceVersion preconditions, generation, immutable fields).

use super::*;

impl State {
    pub(super) fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        manager: &str,
        operation: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.check_scope(rt, namespace)?;
        let fields = patch::leaf_fields(&object);
        let uid = self.new_uid();
        let metadata = ensure_metadata(&mut object)?;
        if metadata
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let Some(prefix) = metadata.get("generateName").and_then(Value::as_str) else {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    vec![(
                        "metadata.name".to_owned(),
                        "Required value: name or generateName is required".to_owned(),
                    )],
                ));
            };
            let suffix: String = uid
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(5)
                .collect();
            metadata.insert("name".to_owned(), json!(format!("{prefix}{suffix}")));
        }
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if rt.namespaced {
            metadata.insert("namespace".to_owned(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            metadata.remove(field);
        }
        metadata.insert("uid".to_owned(), json!(uid));
        metadata.insert("creationTimestamp".to_owned(), json!(now()));
        metadata.insert("generation".to_owned(), json!(1));
        if self.get(rt, namespace, &name).is_ok() {
            return Err(ApiError::already_exists(&rt.qualified_plural(), &name));
        }
        if rt.status_subresource && !rt.group.is_empty() {
            // Status is written through /status; a create carries none (built-in core objects
            // such as Nodes and Namespaces keep theirs, as the real strategies do).
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        if rt.group.is_empty() && rt.kind == "Pod" {
            // podStrategy.PrepareForCreate: a new pod is Pending with its QoS class, whatever
            // status the client sent.
            let qos_class = super::admission::pod_qos_class(object.get("spec"));
            if let Some(map) = object.as_object_mut() {
                map.insert(
                    "status".to_owned(),
                    json!({"phase": "Pending", "qosClass": qos_class}),
                );
            }
        }
        let mut object = self.admit(rt, object, None)?;
        patch::write_managed_fields(
            &mut object,
            &[patch::ManagedEntry {
                manager: manager.to_owned(),
                operation: operation.to_owned(),
                api_version: rt.api_version(),
                time: now(),
                subresource: String::new(),
                fields,
            }],
        );
        if rt.kind == "CustomResourceDefinition" {
            self.prepare_crd(&mut object)?;
        }
        if dry_run {
            return Ok(object);
        }
        Ok(self.commit(rt, namespace, &name, object, None))
    }

    /// The common tail of every update: keeps what clients may not change, honours the status
    /// subresource, validates, bumps generation, records field ownership and commits. An update
    /// that changes nothing is not written.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        old: &Value,
        new: Value,
        sub: Subresource,
        managed: Option<Vec<patch::ManagedEntry>>,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let update = prepare_update(rt, old, new, sub, managed, options, |object| {
            self.admit_write(rt, object, Some(old), sub)
        })?;
        let Update::Write(mut new) = update else {
            return Ok(old.clone());
        };
        if rt.kind == "CustomResourceDefinition" {
            self.prepare_crd(&mut new)?;
        }
        if options.dry_run {
            return Ok(new);
        }
        Ok(self.commit(rt, namespace, name, new, Some(old)))
    }

    pub(super) fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        new: Value,
        sub: Subresource,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_scope(rt, namespace)?;
        let old = self.get(rt, namespace, name)?.clone();
        if let Some(body_name) = metadata_str(&new, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = metadata_str(&new, "resourceVersion")
            && Some(rv) != metadata_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        // A PUT carrying a uid makes it a storage precondition (the generic registry's
        // `defaultUpdatedObjectInfo.Preconditions`): a body read from an older object of that name
        // is refused rather than written over its successor.
        if let Some(uid) = metadata_str(&new, "uid")
            && Some(uid) != metadata_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &rt.qualified_plural(),
                name,
                &format!(
                    "StorageError: invalid object, Code: 4, Key: {}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    storage_key(rt, namespace, name),
                    metadata_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        self.finish_update(rt, namespace, name, &old, new, sub, None, options)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: Subresource,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_scope(rt, namespace)?;
        let existing = self.get(rt, namespace, name).cloned();
        if let PatchKind::Apply { force } = kind {
            return self.apply(
                rt,
                namespace,
                name,
                existing.ok(),
                body,
                sub,
                force,
                options,
            );
        }
        let old = existing?;
        let new = patched(rt, name, &old, kind, body)?;
        self.finish_update(rt, namespace, name, &old, new, sub, None, options)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        existing: Option<Value>,
        applied: &Value,
        sub: Subresource,
        force: bool,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if options.field_manager.is_empty() || options.field_manager == "unknown" {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        for (field, expected) in [("apiVersion", rt.api_version()), ("kind", rt.kind.clone())] {
            if applied.get(field).and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "{field} must be {expected} in an apply patch for {}",
                    rt.qualified_plural()
                )));
            }
        }
        if metadata_str(applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object does not match the name on the URL ({name})"
            )));
        }
        let mut intent = applied.clone();
        if let Some(metadata) = intent.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
        let time = now();
        let Some(live) = existing else {
            if sub == Subresource::Status {
                return Err(ApiError::not_found(&rt.qualified_plural(), name));
            }
            let mut object = intent;
            ensure_metadata(&mut object)?.insert("name".to_owned(), json!(name));
            return self.create(
                rt,
                namespace,
                object,
                &options.field_manager,
                "Apply",
                options.dry_run,
            );
        };
        let scoped_intent = match sub {
            Subresource::Main => intent,
            Subresource::Status => {
                json!({"status": intent.get("status").cloned().unwrap_or_else(|| json!({}))})
            }
        };
        let normalize = |object: Value| {
            self.admit(rt, object.clone(), Some(&live))
                .unwrap_or(object)
        };
        let applied = patch::server_side_apply(&live, &scoped_intent, &options.field_manager, &rt.api_version(), sub.name(), &time, force, normalize).map_err(|conflicts| {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|(manager, path)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""), "field": patch::display_path(path)}))
                .collect();
            let summary = conflicts
                .iter()
                .map(|(manager, path)| format!("conflict with \"{manager}\": {}", patch::display_path(path)))
                .collect::<Vec<_>>()
                .join(", ");
            let count = conflicts.len();
            ApiError::conflict(&rt.qualified_plural(), name, &format!("Apply failed with {count} conflict{}: {summary}", if count == 1 { "" } else { "s" }))
                .with_details(json!({"name": name, "kind": rt.qualified_plural(), "causes": causes}))
        })?;
        uid_unchanged(rt, name, &live, &applied.object)?;
        self.finish_update(
            rt,
            namespace,
            name,
            &live,
            applied.object,
            sub,
            Some(applied.entries),
            options,
        )
    }
}

/// What an update of `old` to `new` comes to.
pub(super) enum Update {
    /// Nothing but bookkeeping would change: nothing is written.
    Unchanged,
    /// The object to store.
    Write(Value),
}

/// An update's work that needs nothing but the old object (and `admit`, which validates and
/// defaults): keeps what clients may not change, honours the status subresource, bumps
/// generation and records field ownership. Pure, so that a write can do it before taking the
/// store's lock (see `Store::patch`).
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare_update(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    sub: Subresource,
    managed: Option<Vec<patch::ManagedEntry>>,
    options: &WriteOptions,
    admit: impl FnOnce(Value) -> Result<Value, ApiError>,
) -> Result<Update, ApiError> {
    ensure_metadata(&mut new)?;
    if rt.status_subresource {
        let status = match sub {
            Subresource::Main => old.get("status").cloned(),
            Subresource::Status => new.get("status").cloned(),
        };
        if sub == Subresource::Status {
            let mut only_status = old.clone();
            if let Some(map) = only_status.as_object_mut() {
                map.remove("status");
                if let Some(s) = status {
                    map.insert("status".to_owned(), s);
                }
            }
            new = only_status;
        } else if let Some(map) = new.as_object_mut() {
            map.remove("status");
            if let Some(s) = status {
                map.insert("status".to_owned(), s);
            }
        }
    }
    let old_metadata = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let metadata = ensure_metadata(&mut new)?;
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_metadata.get(field) {
            Some(value) => {
                metadata.insert(field.to_owned(), value.clone());
            }
            None => {
                metadata.remove(field);
            }
        }
    }
    let mut new = admit(new)?;
    if !same_spec_part(&new, old) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            + 1;
        if let Some(metadata) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("generation".to_owned(), json!(generation));
        }
    }
    let entries = match managed {
        Some(entries) => entries,
        None => {
            let mut entries = patch::read_managed_fields(old);
            // resourceVersion and managedFields are untracked: not among the changes.
            let changed: BTreeSet<FieldPath> = patch::changed_fields(old, &new);
            patch::record_update(
                &mut entries,
                &options.field_manager,
                &rt.api_version(),
                sub.name(),
                &now(),
                &changed,
            );
            entries
        }
    };
    patch::write_managed_fields(&mut new, &entries);
    if same_but_bookkeeping(&new, old)
        && patch::read_managed_fields(&new)
            .iter()
            .map(|e| (&e.manager, &e.fields))
            .eq(patch::read_managed_fields(old)
                .iter()
                .map(|e| (&e.manager, &e.fields)))
    {
        return Ok(Update::Unchanged);
    }
    Ok(Update::Write(new))
}

/// A merge, strategic or JSON patch applied to a copy of `old`, with the checks that need
/// nothing but `old`: the uid stays, and a resourceVersion in the body must be `old`'s.
pub(super) fn patched(
    rt: &ResourceType,
    name: &str,
    old: &Value,
    kind: PatchKind,
    body: &Value,
) -> Result<Value, ApiError> {
    let mut new = old.clone();
    match kind {
        PatchKind::Merge => patch::merge_patch(&mut new, body),
        PatchKind::Strategic => patch::strategic_merge_patch(&mut new, body),
        PatchKind::Json => patch::json_patch(&mut new, body)?,
        PatchKind::Apply { .. } => {
            return Err(ApiError::internal(
                "an apply patch is merged by server-side apply, not here",
            ));
        }
    }
    uid_unchanged(rt, name, old, &new)?;
    if let Some(rv) = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && Some(rv) != metadata_str(old, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &rt.qualified_plural(),
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::super::support::*;
    use super::*;

    #[test]
    fn a_replace_with_a_stale_resource_version_is_a_conflict() {
        let store = store();
        let rt = resource(&store, "", "v1", "configmaps");
        let first = config_map(&store, "c", None);
        let mut newer = first.clone();
        newer["data"]["k"] = json!("w");
        store
            .replace(&rt, "default", "c", newer, Subresource::Main, &writer("t"))
            .unwrap();
        let mut stale = first;
        stale["data"]["k"] = json!("x");
        let error = store
            .replace(&rt, "default", "c", stale, Subresource::Main, &writer("t"))
            .unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert!(
            error.message.contains("the object has been modified"),
            "{}",
            error.message
        );
        assert_eq!(store.get(&rt, "default", "c").unwrap()["data"]["k"], "w");
    }

    #[test]
    fn a_new_pod_is_pending_and_its_binding_marks_it_scheduled() {
        let store = store();
        let rt = resource(&store, "", "v1", "pods");
        let created = store
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "i"}]},
                       "status": {"phase": "Running", "podIP": "10.0.0.9",
                                  "conditions": [{"type": "Ready", "status": "True"}]}}),
                &writer("t"),
            )
            .unwrap();
        assert_eq!(
            created["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"}),
            "a client's status is not kept on create"
        );
        // The scheduler found no node first: its reason goes with the binding.
        store
            .patch(
                &rt,
                "default",
                "p",
                PatchKind::Merge,
                &json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": "0/3 nodes are available"}]}}),
                Subresource::Status,
                &writer("default-scheduler"),
            )
            .unwrap();
        let mark = store.timeline_len();
        let bound = store
            .bind(
                "default",
                "p",
                "node-1",
                "default-scheduler",
                "scheduler/1.0",
            )
            .unwrap();
        assert_eq!(bound["spec"]["nodeName"], "node-1");
        let conditions = bound["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1, "{conditions:?}");
        assert_eq!(conditions[0]["type"], "PodScheduled");
        assert_eq!(conditions[0]["status"], "True");
        assert!(conditions[0].get("reason").is_none(), "{conditions:?}");
        assert!(conditions[0]["lastTransitionTime"].is_string());
        assert_eq!(
            store.timeline_len() - mark,
            1,
            "node and condition in one write"
        );
    }

    #[test]
    fn generation_counts_spec_changes_and_not_status_or_label_changes() {
        let store = store();
        let rt = resource(&store, "", "v1", "services");
        let created = store
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
                &writer("t"),
            )
            .unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        let patch = |body: Value, sub| {
            store
                .patch(
                    &rt,
                    "default",
                    "s",
                    PatchKind::Merge,
                    &body,
                    sub,
                    &writer("t"),
                )
                .unwrap()
        };
        let labelled = patch(
            json!({"metadata": {"labels": {"a": "b"}}}),
            Subresource::Main,
        );
        assert_eq!(labelled["metadata"]["generation"], 1);
        let status = patch(
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}),
            Subresource::Status,
        );
        assert_eq!(status["metadata"]["generation"], 1);
        let changed = patch(
            json!({"spec": {"ports": [{"port": 81}]}}),
            Subresource::Main,
        );
        assert_eq!(changed["metadata"]["generation"], 2);
    }

    #[test]
    fn a_status_write_changes_only_the_status() {
        let store = store();
        let rt = resource(&store, "", "v1", "services");
        store
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
                &writer("t"),
            )
            .unwrap();
        let body = json!({"spec": {"ports": [{"port": 99}]},
                          "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}});
        let written = store
            .patch(
                &rt,
                "default",
                "s",
                PatchKind::Merge,
                &body,
                Subresource::Status,
                &writer("t"),
            )
            .unwrap();
        assert_eq!(written["spec"]["ports"][0]["port"], 80);
        assert_eq!(
            written["status"]["loadBalancer"]["ingress"][0]["ip"],
            "10.0.0.2"
        );
    }
}
