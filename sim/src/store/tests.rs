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

/// The lock's accounting tells the passes' waits and holds from everyone else's: what the
/// benchmark reads to see whether API requests hold the simulated controllers up.
#[test]
fn the_store_lock_is_accounted_to_passes_and_to_others() {
    use std::time::Duration;
    let store = std::sync::Arc::new(Store::new(100));
    {
        let _held = store.lock();
        std::thread::sleep(Duration::from_millis(20));
    }
    in_pass(|| {
        let _held = store.lock();
        std::thread::sleep(Duration::from_millis(10));
    });
    let taken = store.take_lock_times();
    assert!(taken.others_held >= Duration::from_millis(20), "{taken:?}");
    assert!(
        taken.pass_held >= Duration::from_millis(10) && taken.pass_held < taken.others_held,
        "{taken:?}"
    );
    assert_eq!(
        store.take_lock_times(),
        LockTimesTaken::default(),
        "taken once"
    );

    // A pass asking while a request holds the lock waits for it.
    let held = store.lock();
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || in_pass(|| drop(store.lock())))
    };
    std::thread::sleep(Duration::from_millis(30));
    drop(held);
    waiter.join().unwrap();
    let taken = store.take_lock_times();
    assert!(taken.pass_waited >= Duration::from_millis(20), "{taken:?}");
    assert!(taken.others_held >= Duration::from_millis(30), "{taken:?}");
}
