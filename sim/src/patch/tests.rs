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
