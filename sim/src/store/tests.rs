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

/// What others hold the lock for is told apart by operation and resource, longest first: how
/// the benchmark finds the requests that keep the passes waiting.
#[test]
fn the_lock_held_by_requests_is_accounted_by_operation_and_resource() {
    let store = Store::new(100);
    let configmaps = store.resolve("", "v1", "configmaps").expect("built in");
    let options = WriteOptions {
        field_manager: "test".into(),
        dry_run: false,
        client: "test".into(),
    };
    store.take_lock_times();
    store
        .create(
            &configmaps,
            "default",
            json!({"metadata": {"name": "c"}}),
            &options,
        )
        .unwrap();
    for _ in 0..3 {
        store.get(&configmaps, "default", "c").unwrap();
    }
    in_pass(|| store.get(&configmaps, "default", "c").unwrap());
    let taken = store.take_lock_times();
    let counted: Vec<(String, u64)> = taken
        .longest_held(10)
        .into_iter()
        .map(|(operation, times, _)| (operation, times))
        .collect();
    assert!(
        counted.contains(&("get configmaps".to_owned(), 3)),
        "{counted:?}"
    );
    assert!(
        counted.contains(&("create configmaps".to_owned(), 1)),
        "{counted:?}"
    );
    assert_eq!(counted.len(), 2, "passes are not among them: {counted:?}");
    let total: std::time::Duration = taken
        .longest_held(10)
        .iter()
        .map(|(_, _, held)| *held)
        .sum();
    assert!(total <= taken.others_held, "{taken:?}");
    assert!(
        store.take_lock_times().others_by_operation.is_empty(),
        "taken once"
    );
}
