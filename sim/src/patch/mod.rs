//! Patches: JSON merge patch, strategic merge patch (the subset kubectl sends), JSON patch, and
//! server-side apply with per-manager field ownership (`managedFields`).

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::errors::ApiError;

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge key of a list field, by field name, for the lists kubectl patches element-wise.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "volumeClaimTemplates" => "name",
        "volumeMounts" | "volumeDevices" => "mountPath",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "ports" => return None, // keyed by containerPort or port+protocol: treated as atomic
        _ => return None,
    })
}

/// Strategic merge patch, as far as kubectl uses it: maps merge, lists with a known merge key
/// merge element-wise (with `$patch: delete`), other lists are replaced, and ordering directives
/// (`$setElementOrder/...`, `$retainKeys`) are ignored.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    strategic_merge(target, patch, None);
}

fn strategic_merge(target: &mut Value, patch: &Value, field: Option<&str>) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Value::Object(target_map) = target else {
                return;
            };
            for (key, value) in patch_map {
                if key.starts_with('$') {
                    continue;
                }
                if value.is_null() {
                    target_map.remove(key);
                } else {
                    strategic_merge(
                        target_map.entry(key.clone()).or_insert(Value::Null),
                        value,
                        Some(key),
                    );
                }
            }
        }
        Value::Array(items) => {
            let key = field.and_then(merge_key);
            match (key, target.as_array_mut()) {
                (Some(key), Some(existing)) => {
                    for item in items {
                        let id = item.get(key);
                        let position = existing
                            .iter()
                            .position(|e| e.get(key) == id && id.is_some());
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match (position, delete) {
                            (Some(i), true) => {
                                existing.remove(i);
                            }
                            (Some(i), false) => strategic_merge(&mut existing[i], item, None),
                            (None, false) => {
                                let mut fresh = Value::Null;
                                strategic_merge(&mut fresh, item, None);
                                existing.push(fresh);
                            }
                            (None, true) => {}
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn parent_and_key<'a>(
    target: &'a mut Value,
    path: &str,
) -> Result<(&'a mut Value, String), ApiError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    let parent_value = if parent.is_empty() {
        target
    } else {
        target
            .pointer_mut(parent)
            .ok_or_else(|| ApiError::bad_request(format!("path {parent:?} does not exist")))?
    };
    Ok((parent_value, unescape_pointer(last)))
}

fn json_patch_add(target: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let (parent, key) = parent_and_key(target, path)?;
    match parent {
        Value::Object(map) => {
            map.insert(key, value);
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
            } else {
                let index: usize = key
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("bad array index {key:?}")))?;
                if index > items.len() {
                    return Err(ApiError::bad_request(format!(
                        "array index {index} out of bounds"
                    )));
                }
                items.insert(index, value);
            }
        }
        _ => return Err(ApiError::bad_request(format!("cannot add at {path:?}"))),
    }
    Ok(())
}

fn json_patch_remove(target: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, key) = parent_and_key(target, path)?;
    let removed = match parent {
        Value::Object(map) => map.remove(&key),
        Value::Array(items) => key
            .parse::<usize>()
            .ok()
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| ApiError::bad_request(format!("path {path:?} does not exist")))
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, operations: &Value) -> Result<(), ApiError> {
    let operations = operations
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    for operation in operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = || operation.get("value").cloned().unwrap_or(Value::Null);
        let from = || {
            operation
                .get("from")
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        match op {
            "add" => json_patch_add(target, path, value())?,
            "remove" => {
                json_patch_remove(target, path)?;
            }
            "replace" => {
                json_patch_remove(target, path)?;
                json_patch_add(target, path, value())?;
            }
            "move" => {
                let moved = json_patch_remove(target, from())?;
                json_patch_add(target, path, moved)?;
            }
            "copy" => {
                let copied = target.pointer(from()).cloned().ok_or_else(|| {
                    ApiError::bad_request(format!("path {:?} does not exist", from()))
                })?;
                json_patch_add(target, path, copied)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()) {
                    return Err(ApiError::invalid(
                        "JSON patch",
                        path,
                        vec![(path.to_owned(), "test operation failed".to_owned())],
                    ));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// A field path: keys through nested objects. Lists are owned as a whole.
pub type FieldPath = Vec<String>;

/// Fields of an object that ownership is never tracked for.
fn is_untracked(path: &[String]) -> bool {
    matches!(
        path.first().map(String::as_str),
        Some("apiVersion" | "kind")
    ) || (path.first().map(String::as_str) == Some("metadata")
        && matches!(
            path.get(1).map(String::as_str),
            Some(
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "generation"
                    | "creationTimestamp"
                    | "managedFields"
                    | "deletionTimestamp"
                    | "deletionGracePeriodSeconds"
                    | "selfLink"
            )
        ))
}

/// The leaf fields an object sets (scalars and whole lists; empty maps count as leaves).
pub fn leaf_fields(value: &Value) -> BTreeSet<FieldPath> {
    let mut fields = BTreeSet::new();
    collect_leaves(value, &mut Vec::new(), &mut fields);
    fields.retain(|p| !is_untracked(p));
    fields
}

fn collect_leaves(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// Leaf fields whose value differs between two versions of an object.
///
/// Both versions are walked together and an equal subtree is left at its root: every write
/// pays for this (managed-fields bookkeeping), and collecting every leaf of both versions and
/// looking each one up again from the root made a StatefulSet's status write cost as much as
/// its whole template.
pub fn changed_fields(old: &Value, new: &Value) -> BTreeSet<FieldPath> {
    let mut fields = BTreeSet::new();
    collect_changes(Some(old), Some(new), &mut Vec::new(), &mut fields);
    fields.retain(|p| !is_untracked(p));
    fields
}

fn collect_changes(
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) {
    match (old, new) {
        (Some(Value::Object(old_map)), Some(Value::Object(new_map)))
            if !old_map.is_empty() && !new_map.is_empty() =>
        {
            let added = new_map.keys().filter(|key| !old_map.contains_key(*key));
            for key in old_map.keys().chain(added) {
                path.push(key.clone());
                collect_changes(old_map.get(key), new_map.get(key), path, out);
                path.pop();
            }
        }
        _ if old == new => {}
        // A leaf that changed, or a map that became a leaf (or the other way round): every
        // leaf on either side differs from what the other side has at that path.
        _ => {
            for side in [old, new].into_iter().flatten() {
                collect_leaves(side, path, out);
            }
        }
    }
}

pub fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Removes a field, and the maps it leaves empty (an applier that drops a field drops its
/// enclosing map too).
pub fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(map)) = parents
        .iter()
        .try_fold(&mut *value, |v, key| v.get_mut(key))
    {
        map.remove(last);
    }
    for depth in (1..path.len()).rev() {
        let prefix = &path[..depth];
        let empty =
            get_path(value, prefix).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if !empty {
            break;
        }
        let (key, parents) = prefix.split_last().expect("prefix is non-empty");
        if let Some(Value::Object(map)) = parents.iter().try_fold(&mut *value, |v, k| v.get_mut(k))
        {
            map.remove(key);
        }
    }
}

/// Deep merge used by apply: maps merge recursively, anything else is replaced.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied) {
        (Some(target_map), Value::Object(applied_map)) => {
            for (key, value) in applied_map {
                apply_merge(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        _ => *target = applied.clone(),
    }
}

/// Encodes field paths as `fieldsV1` (`{"f:spec": {"f:replicas": {}}}`).
pub fn encode_fields(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for key in path {
            let entry = node.entry(format!("f:{key}")).or_insert_with(|| json!({}));
            let Value::Object(next) = entry else { break };
            node = next;
        }
    }
    Value::Object(root)
}

/// Decodes `fieldsV1` back to leaf paths.
pub fn decode_fields(fields: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    decode_into(fields, &mut Vec::new(), &mut out);
    out
}

fn decode_into(node: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let children: Vec<(&String, &Value)> = node
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
        .unwrap_or_default();
    if children.is_empty() {
        if !path.is_empty() {
            out.insert(path.clone());
        }
        return;
    }
    for (key, child) in children {
        path.push(key[2..].to_owned());
        decode_into(child, path, out);
        path.pop();
    }
}

/// Whether two field paths overlap (one is a prefix of the other).
pub fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// One manager's entry in `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    pub fields: BTreeSet<FieldPath>,
}

impl ManagedEntry {
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(&self.fields),
        });
        if !self.subresource.is_empty() {
            entry["subresource"] = json!(self.subresource);
        }
        entry
    }

    pub fn from_json(value: &Value) -> Option<ManagedEntry> {
        Some(ManagedEntry {
            manager: value.get("manager")?.as_str()?.to_owned(),
            operation: value.get("operation")?.as_str()?.to_owned(),
            api_version: value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            time: value
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            subresource: value
                .get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            fields: value.get("fieldsV1").map(decode_fields).unwrap_or_default(),
        })
    }
}

pub fn read_managed_fields(object: &Value) -> Vec<ManagedEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| entries.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

pub fn write_managed_fields(object: &mut Value, entries: &[ManagedEntry]) {
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".to_owned(), Value::Array(entries));
        }
    }
}

/// Records that `manager` changed `changed` by a non-apply write: it takes ownership of them from
/// every other manager, as Kubernetes does for updates.
pub fn record_update(
    entries: &mut Vec<ManagedEntry>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    time: &str,
    changed: &BTreeSet<FieldPath>,
) {
    if changed.is_empty() {
        return;
    }
    for entry in entries.iter_mut() {
        entry
            .fields
            .retain(|f| !changed.iter().any(|c| overlaps(c, f)));
    }
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(entry) => {
            entry.fields.extend(changed.iter().cloned());
            entry.time = time.to_owned();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            api_version: api_version.to_owned(),
            time: time.to_owned(),
            subresource: subresource.to_owned(),
            fields: changed.clone(),
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// The outcome of a server-side apply on an existing object.
pub struct Applied {
    pub object: Value,
    pub entries: Vec<ManagedEntry>,
}

/// Server-side apply of `applied` (the manager's full intent) onto `live`.
///
/// The merged object is first `normalize`d (defaulted, as the API server does before comparing),
/// so a field the applier leaves to its default does not count as a change. A field the applier
/// changes that another manager owns is a conflict unless `force` (then ownership moves). Fields
/// this manager applied before and no longer applies are removed unless another manager owns
/// them.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    time: &str,
    force: bool,
    normalize: impl Fn(Value) -> Value,
) -> Result<Applied, Vec<(String, FieldPath)>> {
    let mut entries = read_managed_fields(live);
    let applied_fields = leaf_fields(applied);
    let is_mine = |e: &ManagedEntry| {
        e.manager == manager && e.operation == "Apply" && e.subresource == subresource
    };
    let previous: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let owned_by_others: Vec<FieldPath> = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut object = live.clone();
    for dropped in previous.difference(&applied_fields) {
        let shared = owned_by_others.iter().any(|f| overlaps(f, dropped));
        let reapplied_below = applied_fields.iter().any(|f| overlaps(f, dropped));
        if !shared && !reapplied_below {
            remove_path(&mut object, dropped);
        }
    }
    apply_merge(&mut object, applied);
    let object = normalize(object);
    let changed = |path: &FieldPath| get_path(live, path) != get_path(&object, path);
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| e.manager != manager) {
        for field in &entry.fields {
            for mine in applied_fields
                .iter()
                .filter(|m| overlaps(m, field) && changed(m))
            {
                conflicts.push((entry.manager.clone(), mine.clone()));
            }
        }
    }
    conflicts.sort();
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for entry in entries.iter_mut().filter(|e| e.manager != manager) {
        entry
            .fields
            .retain(|f| !applied_fields.iter().any(|m| overlaps(m, f) && changed(m)));
    }
    entries.retain(|e| !is_mine(e));
    entries.push(ManagedEntry {
        manager: manager.to_owned(),
        operation: "Apply".to_owned(),
        api_version: api_version.to_owned(),
        time: time.to_owned(),
        subresource: subresource.to_owned(),
        fields: applied_fields,
    });
    entries.retain(|e| !e.fields.is_empty());
    Ok(Applied { object, entries })
}

/// `.spec.replicas` style rendering of a field path, for conflict messages.
pub fn display_path(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}
