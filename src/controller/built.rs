//! What the last complete apply of each DV's children built: the fingerprint of the validated
//! cluster it was built from and each child's kind, name and hash. Most reconciles are woken by
//! a child's status (a pod starting, a StatefulSet counting its replicas) and change nothing:
//! building every child again (several kilobytes of pod templates per member, encoded to hash)
//! was about a tenth of the operator's CPU while a thousand DVs were created. A reconcile whose
//! fingerprint matches, and whose children the caches show as applied (see [`as_applied`]),
//! skips the build; anything else builds and applies as before.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::build::BuiltChild;

/// A DV's last complete build: the fingerprint of the cluster it was built from and its
/// children. About a kilobyte per DV (names and hashes, never the objects).
pub(super) struct Built {
    inputs: u64,
    children: Vec<BuiltChild>,
}

impl Built {
    /// A build whose every child was applied (or found applied).
    pub(super) fn new(inputs: u64, children: Vec<BuiltChild>) -> Built {
        Built { inputs, children }
    }

    /// Its children, if it was built from `inputs`.
    pub(super) fn children_from(&self, inputs: u64) -> Option<Vec<BuiltChild>> {
        (self.inputs == inputs).then(|| self.children.clone())
    }
}

/// Whether a cached child is as this operator applied it with `hash`: it carries that hash and
/// nobody else wrote any of its fields since (the caches keep only other writers' managed
/// fields). The one test of "nothing to write" for both the applier and the skipped build.
pub(super) fn as_applied(cached: &ObjectMeta, hash: &str) -> bool {
    super::trim::cached_spec_hash(cached) == Some(hash)
        && cached.managed_fields.as_deref().is_none_or(<[_]>::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::build::ChildKind;
    use crate::controller::names::{ANNOTATION_SPEC_HASH, FIELD_MANAGER};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn child(name: &str) -> BuiltChild {
        BuiltChild {
            kind: ChildKind::StatefulSet,
            name: name.to_owned(),
            hash: "abc".to_owned(),
        }
    }

    #[test]
    fn a_build_is_given_back_only_for_the_inputs_it_was_made_from() {
        let built = Built::new(7, vec![child("stader-4-alpha")]);
        assert_eq!(built.children_from(7), Some(vec![child("stader-4-alpha")]));
        assert_eq!(built.children_from(8), None, "other inputs build again");
    }

    #[test]
    fn a_child_is_as_applied_with_its_hash_and_no_other_writer() {
        use k8s_openapi::api::policy::v1::PodDisruptionBudget;
        // `manager` or `manager/status` (a write of the status subresource).
        let writer = |manager: &str| {
            let (manager, subresource) = match manager.split_once('/') {
                Some((manager, sub)) => (manager, Some(sub.to_owned())),
                None => (manager, None),
            };
            ManagedFieldsEntry {
                manager: Some(manager.to_owned()),
                operation: Some("Update".to_owned()),
                subresource,
                fields_v1: Some(FieldsV1(
                    serde_json::json!({"f:spec": {"f:minAvailable": {}}}),
                )),
                ..ManagedFieldsEntry::default()
            }
        };
        // As the caches hold a child: trimmed as it is cached (the hash kept apart, only other
        // writers' managed fields left).
        let cached = |hash: Option<&str>, writers: &[&str]| {
            let mut pdb = PodDisruptionBudget {
                metadata: ObjectMeta {
                    annotations: hash
                        .map(|h| [(ANNOTATION_SPEC_HASH.to_owned(), h.to_owned())].into()),
                    managed_fields: Some(writers.iter().map(|w| writer(w)).collect()),
                    ..ObjectMeta::default()
                },
                ..PodDisruptionBudget::default()
            };
            crate::controller::trim::pod_disruption_budget(&mut pdb);
            pdb.metadata
        };
        assert!(as_applied(&cached(Some("abc"), &[]), "abc"));
        assert!(as_applied(&cached(Some("abc"), &[FIELD_MANAGER]), "abc"));
        assert!(
            as_applied(
                &cached(
                    Some("abc"),
                    &[FIELD_MANAGER, "disruption-controller/status"]
                ),
                "abc"
            ),
            "a controller writing the status is not drift"
        );
        assert!(
            !as_applied(&cached(Some("abd"), &[]), "abc"),
            "another hash"
        );
        assert!(!as_applied(&cached(None, &[]), "abc"), "no hash");
        assert!(
            !as_applied(
                &cached(Some("abc"), &[FIELD_MANAGER, "kubectl-patch"]),
                "abc"
            ),
            "someone else wrote a field: the drift check must run"
        );
    }
}
