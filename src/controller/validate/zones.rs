//! The placement part of validation: the zone each member runs in, and under the Required
//! policy the refusal of a layout in which one zone outage would stop the DV signing.

use std::collections::BTreeMap;

use crate::api::{DistributedValidator, DistributedValidatorSpec, MemberSpec, Policy};
use crate::controller::model::{Facts, Invalid, Refusal};
use crate::domain::placement::{self, MemberZone};
use crate::domain::quorum::Quorum;

/// The zone of each member of the spec, in spec order. Zones are assigned to the members run
/// here; a remote member is in another organisation's infrastructure, a failure domain of its
/// own as far as this cluster can tell (`None`).
pub fn member_zones(dv: &DistributedValidator, facts: &Facts) -> Vec<Option<String>> {
    let previous_zones: BTreeMap<&str, &str> = dv
        .status
        .iter()
        .flat_map(|s| s.members.iter())
        .filter_map(|m| Some((m.name.as_str(), m.zone.as_deref()?)))
        .collect();
    let local: Vec<MemberZone> = dv
        .spec
        .members
        .iter()
        .filter(|m| m.is_local())
        .map(|m| MemberZone {
            index: m.index,
            pinned: m.zone.clone(),
            previous: previous_zones.get(m.name.as_str()).map(|z| (*z).to_owned()),
        })
        .collect();
    let mut local_zones = placement::assign_zones(&local, &facts.zones).into_iter();
    dv.spec
        .members
        .iter()
        .map(|m| {
            if m.is_local() {
                local_zones.next().flatten()
            } else {
                None
            }
        })
        .collect()
}

/// Under the Required policy a DV whose members cannot keep every zone at or below n - t is
/// not created: one zone outage would stop it signing.
pub fn check_required(
    spec: &DistributedValidatorSpec,
    quorum: Quorum,
    zones: &[Option<String>],
    facts: &Facts,
) -> Result<(), Invalid> {
    if spec.placement.policy != Policy::Required {
        return Ok(());
    }
    if facts.zones.is_empty() {
        return Err(no_zones(spec));
    }
    let placed = placement::spread(
        spec.members.iter().zip(zones).map(|(m, z)| zone_name(m, z)),
        quorum.members(),
        quorum.threshold(),
    );
    let unplaced = spec
        .members
        .iter()
        .zip(zones)
        .any(|(m, z)| m.is_local() && z.is_none());
    if placed.live && !unplaced {
        return Ok(());
    }
    let budget = quorum.liveness_budget() as usize;
    let needed = spec.members.len().div_ceil(budget.max(1));
    let zones_found = facts
        .zones
        .iter()
        .map(|(z, n)| format!("{z}: {n} node(s)"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Invalid::one(
        Refusal::PlacementUnsatisfiable,
        format!(
            "members per zone would be {}: with threshold {} of {} at most {budget} may share a zone, or one zone outage stops signing; the cluster has {} zone(s) ({zones_found}); add nodes in at least {needed} zones, or set spec.placement.policy: Preferred",
            placed.describe(),
            quorum.threshold(),
            quorum.members(),
            facts.zones.len(),
        ),
    ))
}

/// How the spread counts a member: by its zone; a remote member and an unplaced one each alone.
fn zone_name(member: &MemberSpec, zone: &Option<String>) -> String {
    match zone {
        _ if member.remote => format!("(remote: {})", member.name),
        Some(zone) => zone.clone(),
        None => "(no zone)".to_owned(),
    }
}

fn no_zones(spec: &DistributedValidatorSpec) -> Invalid {
    let label = &spec.placement.zone_label;
    let within = if spec.placement.zones.is_empty() {
        String::new()
    } else {
        format!(" with a zone in {}", spec.placement.zones.join(", "))
    };
    Invalid::one(
        Refusal::PlacementUnsatisfiable,
        format!(
            "no node carries the zone label {label:?}{within}: label nodes with their zones, or set spec.placement.policy: Preferred"
        ),
    )
}
