//! Shared set-up of the store's unit tests: a fresh store, its resource types, writers.

use super::*;

pub(super) fn store() -> Store {
    Store::new(DEFAULT_HISTORY)
}

pub(super) fn resource(
    store: &Store,
    group: &str,
    version: &str,
    plural: &str,
) -> Arc<ResourceType> {
    store
        .resolve(group, version, plural)
        .unwrap_or_else(|| panic!("{plural} are served"))
}

pub(super) fn writer(manager: &str) -> WriteOptions {
    WriteOptions {
        field_manager: manager.into(),
        dry_run: false,
        client: format!("{manager}/1.0"),
    }
}

pub(super) fn deleter(propagation: Option<&str>) -> DeleteOptions {
    DeleteOptions {
        propagation: propagation.map(str::to_owned),
        grace_period_seconds: None,
        actor: "tester".into(),
        client: "tester/1.0".into(),
        precondition_uid: None,
        precondition_resource_version: None,
        dry_run: false,
    }
}

pub(super) fn config_map(store: &Store, name: &str, owner: Option<&Value>) -> Value {
    let rt = resource(store, "", "v1", "configmaps");
    let mut body = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    if let Some(owner) = owner {
        body["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "ConfigMap",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        }]);
    }
    store
        .create(&rt, "default", body, &writer("tester"))
        .expect("a config map is valid")
}
