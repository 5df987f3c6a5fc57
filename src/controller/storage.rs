//! Storage changes that a StatefulSet cannot take. kube-apiserver refuses any update of a
//! StatefulSet's `volumeClaimTemplates`, so a changed `spec.storage` would fail every apply of
//! that member and block every later template change (image, lock, Secret). Decided here from
//! the spec and the member's live StatefulSet:
//! - a larger size: grow each of the member's PVCs in place (the StorageClass must allow
//!   expansion; kube-apiserver's resize admission says so otherwise), then delete the
//!   StatefulSet with `propagationPolicy: Orphan` so that its pod keeps running and is adopted by
//!   the StatefulSet created next with the new templates (what CloudNativePG and Strimzi do);
//! - a smaller size or another class: refused, with the reason in the DV's condition; nothing is
//!   changed. A PVC is never deleted.

use crate::controller::cached::{StatefulSet, StatefulSetSpec};

use crate::api::StorageSpec;
use crate::controller::names::{VOLUME_CHARON_DATA, VOLUME_VC_DATA};
use crate::domain::quantity::Quantity;

/// One claim template of a member's live StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveClaim {
    pub template: String,
    pub size: String,
    pub class: Option<String>,
}

/// What the member's claims need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageChange {
    Unchanged,
    /// Claim templates to grow, with their new sizes.
    Grow(Vec<(String, String)>),
    /// Why the change cannot be made (one line per claim).
    Refused(Vec<String>),
}

/// The claim templates of a live StatefulSet: from its spec, or, for a trimmed cached copy,
/// from the annotation trimming left ([`crate::controller::trim::CACHED_CLAIMS`]).
pub fn live_claims(set: &StatefulSet) -> Vec<LiveClaim> {
    match &set.spec {
        Some(spec) => live_claims_of_spec(spec),
        None => set
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::controller::trim::CACHED_CLAIMS))
            .map(|text| decode_claims(text))
            .unwrap_or_default(),
    }
}

pub fn live_claims_of_spec(spec: &StatefulSetSpec) -> Vec<LiveClaim> {
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|claim| LiveClaim {
            template: claim.metadata.name.clone().unwrap_or_default(),
            size: claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_default(),
            class: claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone()),
        })
        .collect()
}

/// `template=size=class,...` (an empty class is none): names, quantities and class names hold
/// neither `=` nor `,`.
pub fn encode_claims(claims: &[LiveClaim]) -> String {
    claims
        .iter()
        .map(|c| {
            format!(
                "{}={}={}",
                c.template,
                c.size,
                c.class.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_claims(text: &str) -> Vec<LiveClaim> {
    text.split(',')
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, '=');
            let template = parts.next()?.to_owned();
            let size = parts.next()?.to_owned();
            let class = parts.next().filter(|c| !c.is_empty()).map(str::to_owned);
            Some(LiveClaim {
                template,
                size,
                class,
            })
        })
        .collect()
}

/// A storage quantity in bytes (the suffixes `spec.storage` accepts), if it is one.
pub fn bytes(quantity: &str) -> Option<u128> {
    Quantity::parse(quantity).ok().map(|q| q.bytes())
}

/// Compares what `spec.storage` asks of a member with its live claim templates.
pub fn compare(member: &str, storage: &StorageSpec, live: &[LiveClaim]) -> StorageChange {
    let wanted = [
        (VOLUME_CHARON_DATA, "charonSize", &storage.charon_size),
        (
            VOLUME_VC_DATA,
            "validatorClientSize",
            &storage.validator_client_size,
        ),
    ];
    let mut grow = Vec::new();
    let mut refused = Vec::new();
    for (template, field, size) in wanted {
        let Some(claim) = live.iter().find(|c| c.template == template) else {
            continue;
        };
        if claim.class != storage.storage_class_name {
            refused.push(format!(
                "member {member}: spec.storage.storageClassName cannot change from {} to {} on a running member (a PersistentVolumeClaim keeps its class); set it back",
                claim.class.as_deref().unwrap_or("the default"),
                storage.storage_class_name.as_deref().unwrap_or("the default"),
            ));
            continue;
        }
        match (bytes(size), bytes(&claim.size)) {
            (Some(new), Some(old)) if new < old => refused.push(format!(
                "member {member}: spec.storage.{field} cannot shrink from {} to {size} (a PersistentVolumeClaim never shrinks); set it back to {} or more",
                claim.size, claim.size
            )),
            (Some(new), Some(old)) if new > old => grow.push((template.to_owned(), size.clone())),
            _ => {}
        }
    }
    if !refused.is_empty() {
        StorageChange::Refused(refused)
    } else if !grow.is_empty() {
        StorageChange::Grow(grow)
    } else {
        StorageChange::Unchanged
    }
}

/// The PVC a StatefulSet made from `template` for its pod 0.
pub fn claim_name(template: &str, set: &str) -> String {
    format!("{template}-{set}-0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(charon: &str, vc: &str, class: Option<&str>) -> Vec<LiveClaim> {
        [(VOLUME_CHARON_DATA, charon), (VOLUME_VC_DATA, vc)]
            .iter()
            .map(|(template, size)| LiveClaim {
                template: (*template).to_owned(),
                size: (*size).to_owned(),
                class: class.map(str::to_owned),
            })
            .collect()
    }

    fn storage(charon: &str, vc: &str, class: Option<&str>) -> StorageSpec {
        StorageSpec {
            charon_size: charon.to_owned(),
            validator_client_size: vc.to_owned(),
            storage_class_name: class.map(str::to_owned),
            ..StorageSpec::default()
        }
    }

    #[test]
    fn claims_survive_their_compact_form() {
        let mut claims = live("1Gi", "5Gi", None);
        claims[1].class = Some("fast-ssd".to_owned());
        assert_eq!(decode_claims(&encode_claims(&claims)), claims);
    }

    #[test]
    fn the_same_sizes_written_differently_are_unchanged() {
        assert_eq!(
            compare(
                "m",
                &storage("1024Mi", "1Gi", None),
                &live("1Gi", "1Gi", None)
            ),
            StorageChange::Unchanged
        );
    }

    #[test]
    fn a_larger_size_grows_only_that_claim() {
        assert_eq!(
            compare("m", &storage("2Gi", "1Gi", None), &live("1Gi", "1Gi", None)),
            StorageChange::Grow(vec![(VOLUME_CHARON_DATA.to_owned(), "2Gi".to_owned())])
        );
    }

    /// `E` and `Ei` (which the CRD admits) grow and shrink like every other suffix: they were
    /// once read by the spec checks and not here, so such a size neither grew nor was refused.
    #[test]
    fn exabyte_sizes_grow_and_are_refused_like_any_other() {
        assert_eq!(
            compare("m", &storage("1Ei", "1Gi", None), &live("1P", "1Gi", None)),
            StorageChange::Grow(vec![(VOLUME_CHARON_DATA.to_owned(), "1Ei".to_owned())])
        );
        assert!(matches!(
            compare("m", &storage("1E", "1Gi", None), &live("1Ei", "1Gi", None)),
            StorageChange::Refused(_)
        ));
    }

    #[test]
    fn a_smaller_size_is_refused_with_the_size_to_restore() {
        let StorageChange::Refused(why) = compare(
            "m",
            &storage("512Mi", "2Gi", None),
            &live("1Gi", "1Gi", None),
        ) else {
            panic!("a shrink must be refused");
        };
        assert_eq!(
            why,
            [
                "member m: spec.storage.charonSize cannot shrink from 1Gi to 512Mi (a PersistentVolumeClaim never shrinks); set it back to 1Gi or more"
            ]
        );
    }

    #[test]
    fn another_class_is_refused() {
        let change = compare(
            "m",
            &storage("1Gi", "1Gi", Some("fast")),
            &live("1Gi", "1Gi", None),
        );
        assert!(
            matches!(&change, StorageChange::Refused(why) if why.len() == 2 && why[0].contains("cannot change from the default to fast")),
            "{change:?}"
        );
    }
}
