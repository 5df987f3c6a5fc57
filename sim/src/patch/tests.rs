//! Tests of the patch formats (merge, strategic, JSON) and server-side apply.

use super::*;

fn path(p: &str) -> FieldPath {
    p.split('.').map(str::to_owned).collect()
}

#[test]
fn merge_patch_follows_rfc7386() {
    let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
}

#[test]
fn strategic_merge_merges_containers_by_name() {
    let mut target =
        json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
    strategic_merge_patch(
        &mut target,
        &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b", "image": "2"}]}}),
    );
    assert_eq!(
        target,
        json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}})
    );
    strategic_merge_patch(
        &mut target,
        &json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
    );
    assert_eq!(
        target,
        json!({"spec": {"containers": [{"name": "b", "image": "2"}]}})
    );
}

#[test]
fn json_patch_operations() {
    let mut target = json!({"metadata": {"finalizers": ["a", "b"]}});
    json_patch(
        &mut target,
        &json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
            {"op": "replace", "path": "/metadata/finalizers/0", "value": "x"},
        ]),
    )
    .unwrap();
    assert_eq!(target, json!({"metadata": {"finalizers": ["x", "c"]}}));
    assert!(
        json_patch(
            &mut target,
            &json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "no"}])
        )
        .is_err()
    );
}

#[test]
fn fields_round_trip_through_fields_v1() {
    let object = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"replicas": 1, "template": {"containers": [{"name": "c"}]}}});
    let fields = leaf_fields(&object);
    assert_eq!(
        fields,
        [
            path("metadata.labels.a"),
            path("spec.replicas"),
            path("spec.template.containers")
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(decode_fields(&encode_fields(&fields)), fields);
}

#[test]
fn apply_keeps_each_managers_fields_and_removes_dropped_ones() {
    let live =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}});
    let first = server_side_apply(
        &live,
        &json!({"data": {"a": "1", "b": "2"}}),
        "alice",
        "v1",
        "",
        "t",
        false,
        |o| o,
    )
    .ok()
    .unwrap();
    let mut live = first.object;
    write_managed_fields(&mut live, &first.entries);
    let second = server_side_apply(
        &live,
        &json!({"data": {"c": "3"}}),
        "bob",
        "v1",
        "",
        "t",
        false,
        |o| o,
    )
    .ok()
    .unwrap();
    let mut live = second.object;
    write_managed_fields(&mut live, &second.entries);
    assert_eq!(live["data"], json!({"a": "1", "b": "2", "c": "3"}));
    // alice drops b; c stays because bob owns it.
    let third = server_side_apply(
        &live,
        &json!({"data": {"a": "1"}}),
        "alice",
        "v1",
        "",
        "t",
        false,
        |o| o,
    )
    .ok()
    .unwrap();
    assert_eq!(third.object["data"], json!({"a": "1", "c": "3"}));
}

#[test]
fn apply_conflicts_unless_forced() {
    let live = json!({"metadata": {"name": "x"}});
    let first = server_side_apply(
        &live,
        &json!({"data": {"a": "1"}}),
        "alice",
        "v1",
        "",
        "t",
        false,
        |o| o,
    )
    .ok()
    .unwrap();
    let mut live = first.object;
    write_managed_fields(&mut live, &first.entries);
    let conflicts = server_side_apply(
        &live,
        &json!({"data": {"a": "2"}}),
        "bob",
        "v1",
        "",
        "t",
        false,
        |o| o,
    )
    .err()
    .unwrap();
    assert_eq!(conflicts, vec![("alice".to_owned(), path("data.a"))]);
    // Applying the same value is shared ownership, not a conflict.
    assert!(
        server_side_apply(
            &live,
            &json!({"data": {"a": "1"}}),
            "bob",
            "v1",
            "",
            "t",
            false,
            |o| o
        )
        .is_ok()
    );
    let forced = server_side_apply(
        &live,
        &json!({"data": {"a": "2"}}),
        "bob",
        "v1",
        "",
        "t",
        true,
        |o| o,
    )
    .ok()
    .unwrap();
    assert_eq!(forced.object["data"]["a"], json!("2"));
    assert!(forced.entries.iter().all(|e| e.manager != "alice"));
}

/// What `changed_fields` must find: every leaf of either version whose value at that path
/// differs (the definition, looked up from the root for each leaf).
fn changed_fields_by_definition(old: &Value, new: &Value) -> BTreeSet<FieldPath> {
    let old_fields = leaf_fields(old);
    let new_fields = leaf_fields(new);
    old_fields
        .union(&new_fields)
        .filter(|p| get_path(old, p) != get_path(new, p))
        .cloned()
        .collect()
}

fn small_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0..3i64).prop_map(Value::from),
        "[ab]".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[abm]|metadata|status", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn changed_fields_are_the_leaves_that_differ(old in small_json(), new in small_json()) {
        proptest::prop_assert_eq!(
            changed_fields(&old, &new),
            changed_fields_by_definition(&old, &new)
        );
    }
}

#[test]
fn changed_fields_of_a_status_write_are_in_the_status() {
    let old = json!({"metadata": {"name": "a", "resourceVersion": "1", "labels": {"x": "1"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c"}]}}},
        "status": {"replicas": 1, "readyReplicas": 0}});
    let mut new = old.clone();
    new["status"]["readyReplicas"] = json!(1);
    new["status"]["availableReplicas"] = json!(1);
    new["metadata"]["resourceVersion"] = json!("2");
    assert_eq!(
        changed_fields(&old, &new),
        BTreeSet::from([
            path("status.readyReplicas"),
            path("status.availableReplicas")
        ])
    );
}
