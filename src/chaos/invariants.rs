//! The invariants a chaos run is judged by, read from the simulator's timeline: the operator
//! never took a DV below its threshold, never ran two ready pods for one member, left no extra
//! replica running, was never refused, and deleted no data.

use super::*;

/// Operator writes that left a DV with fewer than its threshold of ready members.
pub fn operator_dips(
    entries: &[TimelineEntry],
    thresholds: &BTreeMap<String, usize>,
) -> Vec<String> {
    readiness_dips(
        entries,
        LABEL_DV,
        |dv| thresholds.get(dv).copied().unwrap_or(0),
        FIELD_MANAGER,
    )
    .into_iter()
    .map(|dip| {
        format!(
            "{} at {:?}: {} ready after {}",
            dip.group, dip.at, dip.ready, dip.pod
        )
    })
    .collect()
}

/// Moments where one member had two ready pods.
pub fn two_ready_pods_for_one_member(entries: &[TimelineEntry]) -> Vec<String> {
    let mut ready: BTreeMap<(String, String, String), BTreeMap<String, bool>> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries {
        let Change::Readiness {
            namespace,
            pod,
            ready: now,
            labels,
            ..
        } = &entry.change
        else {
            continue;
        };
        let (Some(dv), Some(member)) = (labels.get(LABEL_DV), labels.get(LABEL_MEMBER)) else {
            continue;
        };
        let pods = ready
            .entry((namespace.clone(), dv.clone(), member.clone()))
            .or_default();
        pods.insert(pod.clone(), *now);
        let both: Vec<&String> = pods.iter().filter(|(_, r)| **r).map(|(p, _)| p).collect();
        // A hand-edited extra replica is judged by `lingering_extra_replicas`.
        let extra = both.iter().any(|p| ordinal(p).is_some_and(|o| o >= 1));
        if both.len() > 1 && !extra {
            found.push(format!(
                "{namespace}/{dv} member {member} at {:?}: ready {both:?}",
                entry.at
            ));
        }
    }
    found
}

/// How long a pod that a hand-edited `replicas` added may live: the operator must restore the
/// StatefulSet and the extra pod go even in the worst case the scenario makes, where the leader
/// was just killed (up to 3 s before it restarts, a 3 s lease before the standby takes over,
/// its caches' first listing) while API error bursts fail and back off its first tries. A
/// 600 s run (seed 7) measured 16 s at worst; a quiet cluster takes about a second.
pub const EXTRA_REPLICA_WITHIN: Duration = Duration::from_secs(30);

/// The ordinal of a member pod (`<dv>-<member>-<ordinal>`).
pub(super) fn ordinal(pod: &str) -> Option<u32> {
    pod.rsplit('-').next()?.parse().ok()
}

/// Extra replicas (ordinal >= 1) that lived longer than `within`, or were still there at the end.
pub fn lingering_extra_replicas(entries: &[TimelineEntry], within: Duration) -> Vec<String> {
    extra_replica_lives(entries, within).1
}

/// The longest life of an extra replica, and those that lived longer than `within` or were still
/// there at the end.
pub(super) fn extra_replica_lives(
    entries: &[TimelineEntry],
    within: Duration,
) -> (Duration, Vec<String>) {
    let mut born: BTreeMap<(String, String), Duration> = BTreeMap::new();
    let mut longest = Duration::ZERO;
    let mut found = Vec::new();
    for entry in entries {
        let Change::Write {
            verb,
            resource,
            namespace,
            name,
            ..
        } = &entry.change
        else {
            continue;
        };
        if resource != "pods" || ordinal(name).is_none_or(|o| o < 1) {
            continue;
        }
        let key = (namespace.clone(), name.clone());
        match *verb {
            "ADDED" => {
                born.entry(key).or_insert(entry.at);
            }
            "DELETED" => {
                if let Some(at) = born.remove(&key) {
                    let lived = entry.at.saturating_sub(at);
                    longest = longest.max(lived);
                    if lived > within {
                        found.push(format!("{namespace}/{name} lived {lived:?}"));
                    }
                }
            }
            _ => {}
        }
    }
    found.extend(
        born.into_keys()
            .map(|(namespace, name)| format!("{namespace}/{name} still there at the end")),
    );
    (longest, found)
}

/// Deletions of PersistentVolumeClaims or Secrets, by anyone.
/// Requests of the operator that the chart's RBAC refused (403) or that carried no valid token
/// (401): on a real cluster each is a write that never happens.
pub fn operator_refusals(world: &World) -> Vec<String> {
    world
        .sim
        .refusals()
        .into_iter()
        .filter(|(client, _)| client.starts_with(crate::controller::names::FIELD_MANAGER))
        .map(|(client, message)| format!("{client}: {message}"))
        .collect()
}

pub fn deleted_data(entries: &[TimelineEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| match &entry.change {
            Change::Write {
                verb: "DELETED",
                resource,
                namespace,
                name,
                actor,
                ..
            } if resource == "persistentvolumeclaims" || resource == "secrets" => {
                Some(format!("{resource} {namespace}/{name} deleted by {actor}"))
            }
            _ => None,
        })
        .collect()
}
