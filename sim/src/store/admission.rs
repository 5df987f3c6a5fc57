//! Admission: what a write must pass before it is stored (the namespace exists, the scope
//! fits, a claim names a StorageClass that allows it), and how a stored object is presented.

use super::*;

impl State {
    /// The object as a client sees it: a stored object that already names its apiVersion and
    /// kind is borrowed, not copied (writes present the old and new object on hot paths).
    pub(super) fn presented<'a>(
        &self,
        rt: &ResourceType,
        object: &'a Value,
    ) -> std::borrow::Cow<'a, Value> {
        presented(rt, object)
    }

    pub(super) fn present(&self, rt: &ResourceType, object: &Value) -> Value {
        present_owned(rt, object.clone())
    }

    pub(super) fn get(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<&Value, ApiError> {
        self.objects
            .get(&rt.storage_key())
            .and_then(|objects| objects.get(&(namespace.to_owned(), name.to_owned())))
            .ok_or_else(|| ApiError::not_found(&rt.qualified_plural(), name))
    }

    pub(super) fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        let a = self.uid_seed ^ self.next_uid.rotate_left(32);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (self.next_uid >> 48) as u16 & 0xfff,
            self.next_uid & 0xffff_ffff_ffff
        )
    }

    pub(super) fn namespace_exists(&self, namespace: &str) -> bool {
        let key = StorageKey {
            group: String::new(),
            plural: "namespaces".to_owned(),
        };
        self.objects
            .get(&key)
            .is_some_and(|ns| ns.contains_key(&(String::new(), namespace.to_owned())))
    }

    pub(super) fn check_scope(&self, rt: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if rt.namespaced && namespace.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{} is namespaced: use /namespaces/<namespace>/{}",
                rt.kind, rt.plural
            )));
        }
        if rt.namespaced && !self.namespace_exists(namespace) {
            return Err(ApiError::not_found("namespaces", namespace));
        }
        Ok(())
    }

    /// Validates a custom object against its CRD schema, returning the stored form.
    pub(super) fn admit(
        &self,
        rt: &ResourceType,
        object: Value,
        old: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.admit_write(rt, object, old, Subresource::Main)
    }

    /// As [`State::admit`], for a write to `sub`: a status write is validated as kube-apiserver's
    /// status strategies do, by its metadata only (the spec it carries is the stored one).
    pub(super) fn admit_write(
        &self,
        rt: &ResourceType,
        mut object: Value,
        old: Option<&Value>,
        sub: Subresource,
    ) -> Result<Value, ApiError> {
        if rt.kind == "Secret" && rt.group.is_empty() {
            fold_string_data(&mut object);
        }
        let Some(schema_value) = &rt.schema else {
            let causes = match sub {
                Subresource::Main => crate::validation::validate(rt, &object, old),
                Subresource::Status => crate::validation::validate_metadata(&object),
            };
            if !causes.is_empty() {
                let name = metadata_str(&object, "name").unwrap_or_default();
                let kind = if rt.group.is_empty() {
                    rt.kind.clone()
                } else {
                    format!("{}.{}", rt.kind, rt.group)
                };
                return Err(ApiError::invalid(&kind, name, causes));
            }
            if rt.kind == "PersistentVolumeClaim" && rt.group.is_empty() {
                self.admit_claim(&mut object, old)?;
            }
            return Ok(object);
        };
        admit_by_schema(rt, schema_value, object, old)
    }

    pub(super) fn storage_class(&self, name: &str) -> Option<&Value> {
        let key = StorageKey {
            group: "storage.k8s.io".to_owned(),
            plural: "storageclasses".to_owned(),
        };
        self.objects
            .get(&key)?
            .get(&(String::new(), name.to_owned()))
    }

    /// kube-apiserver's admission plugins for claims: `DefaultStorageClass` names the default
    /// class on a create that names none; `PersistentVolumeClaimResize` lets a request grow only
    /// when the claim's class allows expansion.
    pub(super) fn admit_claim(
        &self,
        claim: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let class_of = |c: &Value| {
            c.pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let Some(old) = old else {
            if class_of(claim).is_none() {
                let key = StorageKey {
                    group: "storage.k8s.io".to_owned(),
                    plural: "storageclasses".to_owned(),
                };
                let default = self.objects.get(&key).and_then(|classes| {
                    classes.iter().find_map(|((_, name), class)| {
                        (class.pointer(
                            "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
                        ) == Some(&json!("true")))
                        .then(|| name.clone())
                    })
                });
                if let (Some(default), Some(spec)) = (
                    default,
                    claim.get_mut("spec").and_then(Value::as_object_mut),
                ) {
                    spec.insert("storageClassName".to_owned(), json!(default));
                }
            }
            return Ok(());
        };
        let request = |c: &Value| {
            c.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(crate::validation::quantity_bytes)
        };
        let grows =
            matches!((request(claim), request(old)), (Some(new), Some(before)) if new > before);
        if !grows {
            return Ok(());
        }
        let expandable = class_of(old)
            .and_then(|name| self.storage_class(&name))
            .and_then(|class| class.get("allowVolumeExpansion"))
            .and_then(Value::as_bool)
            == Some(true);
        if expandable {
            return Ok(());
        }
        let name = metadata_str(claim, "name").unwrap_or_default();
        Err(ApiError::new(
            403,
            "Forbidden",
            format!("persistentvolumeclaims \"{name}\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        )
        .with_details(json!({"name": name, "kind": "persistentvolumeclaims"})))
    }
}

/// `stringData` is write-only: the API server merges it into `data` (base64) and drops it.
/// A pod's QoS class from its containers' CPU and memory requests and limits, as
/// `qos.GetPodQOS` decides it at creation: no request or limit anywhere is BestEffort; limits on
/// both in every container, with any request equal to its limit, is Guaranteed; anything else
/// Burstable.
pub(super) fn pod_qos_class(spec: Option<&Value>) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|field| spec?.get(field)?.as_array())
        .flatten()
        .collect();
    let amount = |container: &Value, kind: &str, resource: &str| {
        container
            .pointer(&format!("/resources/{kind}/{resource}"))
            .and_then(|q| match q {
                Value::String(s) => crate::validation::quantity_bytes(s),
                Value::Number(n) => n.as_f64(),
                _ => None,
            })
    };
    let any_set = containers.iter().any(|c| {
        COMPUTE.iter().any(|r| {
            amount(c, "requests", r).is_some_and(|q| q != 0.0) || amount(c, "limits", r).is_some()
        })
    });
    if !any_set {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        COMPUTE.iter().all(|r| match amount(c, "limits", r) {
            Some(limit) => amount(c, "requests", r).is_none_or(|request| request == limit),
            None => false,
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub(super) fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            if let Some(text) = value.as_str() {
                data.insert(
                    key,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

/// The object as a client sees it (see `State::presented`).
pub(super) fn presented<'a>(rt: &ResourceType, object: &'a Value) -> std::borrow::Cow<'a, Value> {
    let named = object.get("apiVersion").and_then(Value::as_str) == Some(rt.api_version().as_str())
        && object.get("kind").and_then(Value::as_str) == Some(rt.kind.as_str());
    if named {
        std::borrow::Cow::Borrowed(object)
    } else {
        std::borrow::Cow::Owned(present_owned(rt, object.clone()))
    }
}

/// A custom object validated and defaulted by its CRD's schema (and transition rules against
/// `old`): all that admits a write of a custom resource, and needs nothing else of the store.
pub(super) fn admit_by_schema(
    rt: &ResourceType,
    schema_value: &crate::schema::Schema,
    object: Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let name = metadata_str(&object, "name").unwrap_or_default().to_owned();
    // Transition rules see the old object as a client would (with apiVersion and kind).
    let old_for_rules = old.map(|o| presented(rt, o));
    schema::admit(schema_value, object, old_for_rules.as_deref()).map_err(|violations| {
        ApiError::invalid(&format!("{}.{}", rt.kind, rt.group), &name, violations)
    })
}

#[cfg(test)]
mod tests {
    use super::super::support::*;
    use super::*;

    #[test]
    fn a_namespaced_object_needs_its_namespace_to_exist() {
        let store = store();
        let rt = resource(&store, "", "v1", "configmaps");
        let error = store
            .create(
                &rt,
                "nowhere",
                json!({"metadata": {"name": "c"}}),
                &writer("t"),
            )
            .unwrap_err();
        assert_eq!((error.code, error.reason), (404, "NotFound"));
        assert_eq!(error.message, "namespaces \"nowhere\" not found");
        let error = store
            .create(&rt, "", json!({"metadata": {"name": "c"}}), &writer("t"))
            .unwrap_err();
        assert_eq!(error.code, 400);
    }

    #[test]
    fn a_pods_qos_class_follows_its_requests_and_limits() {
        let spec = |resources: Value| json!({"containers": [{"name": "c", "image": "i", "resources": resources}]});
        assert_eq!(pod_qos_class(Some(&spec(json!({})))), "BestEffort");
        assert_eq!(
            pod_qos_class(Some(&spec(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}})
            ))),
            "Guaranteed",
            "equal quantities in other units, and a missing request, still guarantee"
        );
        assert_eq!(
            pod_qos_class(Some(&spec(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})
            ))),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(Some(&spec(json!({"requests": {"memory": "64Mi"}})))),
            "Burstable"
        );
    }

    #[test]
    fn string_data_is_stored_as_base64_data_and_never_kept() {
        let store = store();
        let rt = resource(&store, "", "v1", "secrets");
        let stored = store
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
                &writer("t"),
            )
            .unwrap();
        assert_eq!(stored["data"]["password"], "aHVudGVyMg==");
        assert!(stored.get("stringData").is_none());
    }
}
