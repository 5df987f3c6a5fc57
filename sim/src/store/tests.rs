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

/// A served custom resource with a status subresource and a schema that constrains its status.
fn gadgets(store: &Store) -> Arc<ResourceType> {
    let crds = support::resource(
        store,
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
    );
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1}}},
        "status": {"type": "object", "properties": {
            "phase": {"type": "string", "enum": ["A", "B"]}}}}}});
    store
        .create(
            &crds,
            "",
            json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "gadgets.example.com"},
                "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "subresources": {"status": {}}, "schema": schema}]}
            }),
            &support::writer("t"),
        )
        .expect("the CRD is valid");
    support::resource(store, "example.com", "v1", "gadgets")
}

/// A custom resource's patch is worked out before the store's lock is taken and stored only if
/// the object did not move meanwhile (kube-apiserver's `GuaranteedUpdate`): a write in between
/// is never overwritten, and the patch then applies to the newer object.
#[test]
fn a_patch_worked_out_outside_the_lock_is_stored_only_if_the_object_did_not_move() {
    let store = support::store();
    let rt = gadgets(&store);
    let writer = support::writer("operator");
    let patch_status = |name: &str, body: &Value, writer: &WriteOptions| {
        store.patch(
            &rt,
            "default",
            name,
            PatchKind::Merge,
            body,
            Subresource::Status,
            writer,
        )
    };
    let created = store
        .create(
            &rt,
            "default",
            json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
                   "spec": {}}),
            &writer,
        )
        .unwrap();
    assert_eq!(created["spec"]["size"], 1, "defaulted by the schema");
    let stored = |store: &Store| store.lock().get(&rt, "default", "g").unwrap().clone();
    let old = stored(&store);
    let status_a = json!({"status": {"phase": "A"}});
    let new = write::patched(&rt, "g", &old, PatchKind::Merge, &status_a).unwrap();
    let Some(schema) = &rt.schema else {
        panic!("a CRD's resource has its schema")
    };
    let write::Update::Write(new) =
        write::prepare_update(&rt, &old, new, Subresource::Status, None, &writer, |o| {
            admission::admit_by_schema(&rt, schema, o, Some(&old))
        })
        .unwrap()
    else {
        panic!("a new status is a change")
    };
    // Someone else writes first.
    patch_status(
        "g",
        &json!({"status": {"phase": "B"}}),
        &support::writer("other"),
    )
    .unwrap();
    let moved = stored(&store);
    assert_eq!(
        store
            .commit_unless_moved(&rt, "default", "g", &old, new, &writer)
            .unwrap(),
        None,
        "the object moved: nothing is stored"
    );
    assert_eq!(stored(&store), moved, "the other write stands");
    // Deleted between the read and the commit: not found, and nothing comes back.
    let twin = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                      "metadata": {"name": "twin"}, "spec": {}});
    store.create(&rt, "default", twin, &writer).unwrap();
    let read = store.lock().get(&rt, "default", "twin").unwrap().clone();
    let mut changed = read.clone();
    changed["status"] = json!({"phase": "A"});
    store
        .delete(&rt, "default", "twin", &support::deleter(None))
        .unwrap();
    let gone = store
        .commit_unless_moved(&rt, "default", "twin", &read, changed, &writer)
        .unwrap_err();
    assert_eq!(gone.code, 404);
    assert!(store.lock().get(&rt, "default", "twin").is_err());

    let mark = store.timeline_len();
    store.take_lock_times();
    let updated = patch_status("g", &status_a, &writer).unwrap();
    assert_eq!(updated["status"]["phase"], "A");
    assert_eq!(updated["kind"], "Gadget");
    assert_eq!(updated["metadata"]["generation"], 1, "a status write");
    assert!(
        updated["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|entries| entries
                .iter()
                .any(|e| e["manager"] == "operator" && e["subresource"] == "status")),
        "{updated}"
    );
    assert_eq!(store.timeline_len(), mark + 1, "one write");
    let held: Vec<String> = store
        .take_lock_times()
        .longest_held(20)
        .into_iter()
        .map(|(operation, _, _)| operation)
        .collect();
    assert!(
        held.iter().any(|o| o == "patch (read) gadgets")
            && held.iter().any(|o| o == "patch (commit) gadgets")
            && !held.iter().any(|o| o == "patch gadgets"),
        "the patch read the object under the lock, worked it out without it and took it again \
         only to commit: {held:?}"
    );

    let same = patch_status("g", &status_a, &writer).unwrap();
    assert_eq!(
        same["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );
    assert_eq!(
        store.timeline_len(),
        mark + 1,
        "a patch changing nothing is not written"
    );

    let invalid = patch_status("g", &json!({"status": {"phase": "C"}}), &writer).unwrap_err();
    assert_eq!(
        (invalid.code, invalid.reason),
        (422, "Invalid"),
        "{}",
        invalid.message
    );
    let stale = patch_status(
        "g",
        &json!({"metadata": {"resourceVersion": old["metadata"]["resourceVersion"]},
                    "status": {"phase": "B"}}),
        &writer,
    )
    .unwrap_err();
    assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    let missing = patch_status("nothing", &status_a, &writer).unwrap_err();
    assert_eq!(missing.code, 404);
    assert_eq!(
        store.timeline_len(),
        mark + 1,
        "refused patches write nothing"
    );
    assert_eq!(stored(&store)["status"]["phase"], "A");
}
