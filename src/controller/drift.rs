//! Drift: which fields of a child that the operator sets were last written by someone else.
//!
//! The spec-hash annotation says what the operator last applied, not what the object holds now:
//! `kubectl scale sts <member> --replicas=2` leaves the hash alone and starts a second Charon and
//! validator client with the same key share. The API server records who wrote which field
//! (`metadata.managedFields`); a field the desired object sets that another manager owns has
//! been changed by them. A forced apply takes those fields back, after which the other manager
//! no longer owns them, so a corrected object is not corrected again.
//!
//! Pure: the desired object as JSON and the live object's managed-fields entries in, the
//! drifted fields out.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::Value;

/// A field the operator sets that another manager wrote.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriftedField {
    /// The other writer (`kubectl-patch`, `kubectl-edit`, `kubectl` for `scale`, ...).
    pub manager: String,
    /// The field as a dotted path, stopping at the first list (`spec.replicas`,
    /// `spec.template.spec.containers`).
    pub field: String,
}

impl std::fmt::Display for DriftedField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (by {})", self.field, self.manager)
    }
}

/// The leaf paths of the desired object: maps are walked, lists and scalars are leaves (a list
/// is applied as a whole, so anyone writing inside it changed it).
fn leaves(value: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The field paths a managed-fields entry owns, in `f:` segments only: a path that enters a
/// list (`k:`, `v:`, `i:`) stops at the list. The `.` marker (the map exists) is not a field
/// of anyone's value and is skipped.
fn owned(fields: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    let Value::Object(map) = fields else {
        return;
    };
    if map.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (key, child) in map {
        if key == "." {
            continue;
        }
        match key.strip_prefix("f:") {
            Some(name) => {
                prefix.push(name.to_owned());
                owned(child, prefix, out);
                prefix.pop();
            }
            // Inside a list: the list itself is what changed.
            None => {
                out.insert(prefix.clone());
            }
        }
    }
}

/// Fields of `desired` (the object as the operator applies it) that a manager other than
/// `ours` owns in `managed`, ignoring status writes (the object's controller reports there).
/// Sorted and without duplicates; empty when nobody else wrote what the operator sets.
pub fn drifted_fields(
    desired: &Value,
    managed: &[ManagedFieldsEntry],
    ours: &str,
) -> Vec<DriftedField> {
    let mut wanted = BTreeSet::new();
    let mut without_status = desired.clone();
    if let Value::Object(map) = &mut without_status {
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    leaves(&without_status, &mut Vec::new(), &mut wanted);
    let mut drifted = BTreeSet::new();
    for entry in managed {
        let manager = entry.manager.as_deref().unwrap_or_default();
        if manager == ours || entry.subresource.as_deref() == Some("status") {
            continue;
        }
        let Some(fields) = &entry.fields_v1 else {
            continue;
        };
        let mut theirs = BTreeSet::new();
        owned(&fields.0, &mut Vec::new(), &mut theirs);
        for path in theirs {
            // Theirs is one of our leaves or inside one (a list element we set).
            if let Some(leaf) = wanted
                .iter()
                .find(|leaf| path.starts_with(leaf) && !leaf.is_empty())
            {
                drifted.insert(DriftedField {
                    manager: manager.to_owned(),
                    field: leaf.join("."),
                });
            }
        }
    }
    drifted.into_iter().collect()
}

/// The managed-fields entries worth keeping in a cache: those of other writers of the main
/// resource (usually none), so that drift is seen without holding every object's field sets.
pub fn foreign_entries(
    managed: Option<Vec<ManagedFieldsEntry>>,
    ours: &str,
) -> Option<Vec<ManagedFieldsEntry>> {
    let kept: Vec<ManagedFieldsEntry> = managed
        .into_iter()
        .flatten()
        .filter_map(|entry| kept_entry(entry.manager, entry.subresource, entry.fields_v1, ours))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A managed-fields entry as a cache keeps it, if it keeps it: another writer's (not `ours`)
/// of the main resource (not `status`), with the fields it owns; of it only who wrote which
/// fields where.
pub fn kept_entry(
    manager: Option<String>,
    subresource: Option<String>,
    fields_v1: Option<FieldsV1>,
    ours: &str,
) -> Option<ManagedFieldsEntry> {
    let foreign = manager.as_deref().is_some_and(|m| m != ours)
        && subresource.as_deref() != Some("status")
        && fields_v1.is_some();
    foreign.then(|| ManagedFieldsEntry {
        manager,
        subresource,
        fields_v1,
        ..ManagedFieldsEntry::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Update".to_owned()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    fn desired() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "x", "labels": {"dvt.io/member": "alpha"}, "annotations": {"dvt.io/spec-hash": "h"}},
            "spec": {
                "replicas": 1,
                "template": {"spec": {"containers": [{"name": "charon", "image": "obolnetwork/charon:v1.10.3"}]}}
            }
        })
    }

    #[test]
    fn a_scaled_member_is_drift_on_replicas() {
        let scaled = entry(
            "kubectl",
            Some("scale"),
            json!({"f:spec": {"f:replicas": {}}}),
        );
        assert_eq!(
            drifted_fields(&desired(), &[scaled], "dvt-operator"),
            [DriftedField {
                manager: "kubectl".into(),
                field: "spec.replicas".into()
            }]
        );
    }

    #[test]
    fn an_edited_image_is_drift_on_the_containers() {
        let edited = entry(
            "kubectl-edit",
            None,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"charon\"}": {"f:image": {}}
            }}}}}),
        );
        let drift = drifted_fields(&desired(), &[edited], "dvt-operator");
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].field, "spec.template.spec.containers");
        assert_eq!(
            drift[0].to_string(),
            "spec.template.spec.containers (by kubectl-edit)"
        );
    }

    #[test]
    fn fields_the_operator_does_not_set_are_not_drift() {
        let annotated = entry(
            "kubectl-annotate",
            None,
            json!({"f:metadata": {"f:annotations": {".": {}, "f:team": {}}, "f:labels": {"f:extra": {}}}}),
        );
        let restarted = entry(
            "kubectl-rollout",
            None,
            json!({"f:spec": {"f:template": {"f:metadata": {"f:annotations": {
                "f:kubectl.kubernetes.io/restartedAt": {}
            }}}}}),
        );
        assert_eq!(
            drifted_fields(&desired(), &[annotated, restarted], "dvt-operator"),
            []
        );
    }

    #[test]
    fn our_own_writes_and_status_reports_are_not_drift() {
        let ours = entry("dvt-operator", None, json!({"f:spec": {"f:replicas": {}}}));
        let status = entry(
            "kube-controller-manager",
            Some("status"),
            json!({"f:status": {"f:replicas": {}}, "f:spec": {"f:replicas": {}}}),
        );
        assert_eq!(
            drifted_fields(&desired(), &[ours, status], "dvt-operator"),
            []
        );
    }

    #[test]
    fn a_changed_label_of_ours_is_drift() {
        let relabelled = entry(
            "kubectl-label",
            None,
            json!({"f:metadata": {"f:labels": {"f:dvt.io/member": {}}}}),
        );
        assert_eq!(
            drifted_fields(&desired(), &[relabelled], "dvt-operator")[0].field,
            "metadata.labels.dvt.io/member"
        );
    }

    #[test]
    fn caches_keep_only_other_writers_of_the_main_resource() {
        let kept = foreign_entries(
            Some(vec![
                entry("dvt-operator", None, json!({"f:spec": {}})),
                entry(
                    "kube-controller-manager",
                    Some("status"),
                    json!({"f:status": {}}),
                ),
                entry(
                    "kubectl",
                    Some("scale"),
                    json!({"f:spec": {"f:replicas": {}}}),
                ),
                ManagedFieldsEntry::default(),
            ]),
            "dvt-operator",
        )
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].manager.as_deref(), Some("kubectl"));
        assert!(kept[0].time.is_none() && kept[0].operation.is_none());
        assert_eq!(
            foreign_entries(
                Some(vec![entry("dvt-operator", None, json!({}))]),
                "dvt-operator"
            ),
            None
        );
    }
}
