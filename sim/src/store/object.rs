//! What the store reads and rewrites of any object: metadata fields, owners and finalizers,
//! the spec part that `metadata.generation` tracks, and the etcd key errors name.

use super::*;

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

/// Everything but metadata and status: what `metadata.generation` tracks.
pub(super) fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The object without the fields a write never compares (resourceVersion, managedFields).
pub(super) fn comparable(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
    }
    copy
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
