//! What the store reads and rewrites of any object: metadata fields, owners and finalizers,
//! the spec part that `metadata.generation` tracks, and the etcd key errors name.

use super::*;
use serde_json::Map;

pub(super) fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The etcd key kube-apiserver names in storage errors: `/registry/<plural>/<ns>/<name>` for
/// the built-in kinds we serve, `/registry/<group>/<plural>/...` for custom resources.
pub(super) fn storage_key(rt: &ResourceType, namespace: &str, name: &str) -> String {
    let prefix = if rt.schema.is_some() {
        format!("/registry/{}/{}", rt.group, rt.plural)
    } else {
        format!("/registry/{}", rt.plural)
    };
    if rt.namespaced {
        format!("{prefix}/{namespace}/{name}")
    } else {
        format!("{prefix}/{name}")
    }
}

/// A patch may not change `metadata.uid`: ValidateObjectMetaUpdate's immutable field (a patch has
/// no storage precondition, so a uid in its body is checked here, and a client can use it as
/// one: the patch is refused if the object was recreated since it was read).
pub(super) fn uid_unchanged(
    rt: &ResourceType,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    match metadata_str(new, "uid") {
        Some(uid) if Some(uid) != metadata_str(old, "uid") => Err(ApiError::invalid(
            &rt.kind,
            name,
            vec![(
                "metadata.uid".to_owned(),
                format!("Invalid value: \"{uid}\": field is immutable"),
            )],
        )),
        _ => Ok(()),
    }
}

pub(super) fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether two maps are equal apart from the keys in `skip` (compared in place: a write
/// compares whole objects twice, and copying them to drop a few keys cost more than the write).
fn equal_except(a: &Map<String, Value>, b: &Map<String, Value>, skip: &[&str]) -> bool {
    let kept =
        |map: &Map<String, Value>| map.keys().filter(|k| !skip.contains(&k.as_str())).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// Whether the spec part — everything but metadata and status, what `metadata.generation`
/// tracks — is the same in both.
pub(super) fn same_spec_part(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => equal_except(a, b, &["metadata", "status"]),
        _ => a == b,
    }
}

/// Whether two versions are the same but for the fields a write never compares
/// (resourceVersion, managedFields).
pub(super) fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    match (a.get("metadata"), b.get("metadata")) {
        (Some(Value::Object(meta_a)), Some(Value::Object(meta_b))) => {
            equal_except(a, b, &["metadata"])
                && equal_except(meta_a, meta_b, &["resourceVersion", "managedFields"])
        }
        // Without metadata maps on both sides there is no bookkeeping to leave out.
        _ => a == b,
    }
}

pub(super) fn ensure_metadata(
    object: &mut Value,
) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON or YAML object",
        ));
    }
    let metadata = object
        .as_object_mut()
        .expect("checked to be an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    metadata
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_is_not_a_difference_and_anything_else_is() {
        let old = json!({"metadata": {"name": "a", "resourceVersion": "1", "managedFields": [1]},
            "spec": {"x": 1}, "status": {"y": 1}});
        let mut new = old.clone();
        new["metadata"]["resourceVersion"] = json!("2");
        new["metadata"]["managedFields"] = json!([2]);
        assert!(same_but_bookkeeping(&old, &new));
        new["metadata"]
            .as_object_mut()
            .expect("metadata is a map")
            .remove("managedFields");
        assert!(same_but_bookkeeping(&old, &new));
        let mut labelled = new.clone();
        labelled["metadata"]["labels"] = json!({"l": "v"});
        assert!(!same_but_bookkeeping(&old, &labelled));
        let mut restated = new.clone();
        restated["status"]["y"] = json!(2);
        assert!(!same_but_bookkeeping(&old, &restated));
        let mut extra = new.clone();
        extra["data"] = json!({});
        assert!(!same_but_bookkeeping(&old, &extra));
    }

    #[test]
    fn the_spec_part_leaves_out_metadata_and_status() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"l": "v"});
        new["status"]["y"] = json!(2);
        assert!(same_spec_part(&old, &new));
        new["spec"]["x"] = json!(2);
        assert!(!same_spec_part(&old, &new));
        let mut added = old.clone();
        added["data"] = json!({"k": "v"});
        assert!(!same_spec_part(&old, &added));
    }
}
