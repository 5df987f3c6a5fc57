//! CustomResourceDefinitions: a CRD checked when written, its resources served once it is
//! Established, and gone (with its objects) when it is deleted.

use super::*;

impl State {
    /// Fills a CRD's status and validates the fields serving needs.
    pub(super) fn prepare_crd(&self, crd: &mut Value) -> Result<(), ApiError> {
        let name = metadata_str(crd, "name").unwrap_or_default().to_owned();
        let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = spec
            .pointer("/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if group.is_empty() || plural.is_empty() || name != format!("{plural}.{group}") {
            return Err(ApiError::invalid(
                "CustomResourceDefinition.apiextensions.k8s.io",
                &name,
                vec![(
                    "metadata.name".to_owned(),
                    format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                )],
            ));
        }
        let stored: Vec<Value> = spec
            .get("versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage") == Some(&json!(true)))
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let time = now();
        crd["status"] = json!({
            "acceptedNames": spec.get("names").cloned().unwrap_or(Value::Null),
            "storedVersions": stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time},
            ],
        });
        Ok(())
    }

    pub(super) fn register_crd(&mut self, crd: &Value) {
        let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let names = spec.get("names").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let list = |v: &Value, k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let plural = text(&names, "plural");
        self.registry.remove_resource(&group, &plural);
        if metadata_str(crd, "deletionTimestamp").is_some() {
            return;
        }
        for version in spec
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if version.get("served") == Some(&json!(false)) {
                continue;
            }
            let kind = text(&names, "kind");
            let singular = match text(&names, "singular") {
                s if s.is_empty() => kind.to_lowercase(),
                s => s,
            };
            self.registry.insert(ResourceType {
                group: group.clone(),
                version: text(version, "name"),
                kind,
                plural: plural.clone(),
                singular,
                namespaced: spec.get("scope").and_then(Value::as_str) == Some("Namespaced"),
                status_subresource: version.pointer("/subresources/status").is_some(),
                eviction: false,
                short_names: list(&names, "shortNames"),
                categories: list(&names, "categories"),
                schema: version
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .map(crate::schema::Schema::new),
                printer_columns: version
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                create_only: false,
            });
        }
    }

    pub(super) fn unregister_crd(&mut self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = StorageKey {
            group: group.clone(),
            plural: plural.clone(),
        };
        let refs: Vec<ObjectRef> = self
            .objects
            .get(&key)
            .map(|objects| {
                objects
                    .keys()
                    .map(|(ns, name)| (key.clone(), ns.clone(), name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for object_ref in refs {
            self.remove(&object_ref);
        }
        self.registry.remove_resource(&group, &plural);
    }
}

#[cfg(test)]
mod tests {
    use super::super::support::*;
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                  "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
    }

    #[test]
    fn a_crd_serves_its_resource_until_it_is_deleted() {
        let store = store();
        let crds = resource(
            &store,
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
        );
        assert!(store.resolve("example.com", "v1", "widgets").is_none());
        let created = store.create(&crds, "", crd(), &writer("t")).unwrap();
        let established = created["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{created}");
        let widgets = store
            .resolve("example.com", "v1", "widgets")
            .expect("served once established");
        store
            .create(
                &widgets,
                "default",
                json!({"metadata": {"name": "w"}}),
                &writer("t"),
            )
            .unwrap();
        store
            .delete(&crds, "", "widgets.example.com", &deleter(None))
            .unwrap();
        assert!(store.resolve("example.com", "v1", "widgets").is_none());
    }
}
