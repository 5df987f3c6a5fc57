//! Tests of the store as watchers see it.

use super::*;

#[test]
fn a_watch_event_holds_the_served_object_as_json_and_its_labels() {
    let store = Store::new(DEFAULT_HISTORY);
    let rt = store
        .registry()
        .get("", "v1", "configmaps")
        .expect("configmaps are built in");
    let (_, mut receiver) = store.watch_from(&rt.storage_key(), 0).unwrap();
    let body = json!({"metadata": {"name": "c", "labels": {"app": "x"}}, "data": {"k": "v"}});
    store
        .create(
            &rt,
            "default",
            body,
            &WriteOptions {
                field_manager: "test".into(),
                dry_run: false,
                client: "test".into(),
            },
        )
        .unwrap();
    let event = receiver.try_recv().unwrap();
    assert_eq!(event.labels, json!({"app": "x"}));
    assert_eq!(event.api_version, "v1");
    let object = event.object();
    assert_eq!(object["kind"], "ConfigMap");
    assert_eq!(object["apiVersion"], "v1");
    assert_eq!(object["data"]["k"], "v");
}
