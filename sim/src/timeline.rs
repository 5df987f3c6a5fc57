//! What happened in the simulated cluster, in order: every write with the field manager (or user
//! agent) that made it, and every change of a pod's readiness with the write that caused it.
//! Tests query it for invariants such as "the ready members of a DistributedValidator never went
//! below its threshold because of a write by dvt-operator".

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// One entry of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// Since the store was created (milliseconds in JSON).
    #[serde(rename = "atMs", serialize_with = "as_millis")]
    pub at: Duration,
    /// The resourceVersion the change was committed at.
    pub resource_version: u64,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Change {
    /// An object was created, modified or removed.
    Write {
        /// `ADDED`, `MODIFIED` or `DELETED`.
        verb: &'static str,
        /// `plural` or `plural.group`.
        resource: String,
        namespace: String,
        name: String,
        /// The field manager, or for deletes and evictions the client's user agent.
        actor: String,
        /// The client's whole user agent (`dvt-operator/0.1.0 replica-a`): which replica wrote.
        client: String,
    },
    /// A pod became ready or stopped being ready (including by being deleted).
    Readiness {
        namespace: String,
        pod: String,
        ready: bool,
        /// The pod's labels at the time, so that tests can group pods (e.g. by DV).
        labels: BTreeMap<String, String>,
        /// Who made the write that changed readiness (kubelet, a deleting client, ...).
        actor: String,
    },
}

fn as_millis<S: serde::Serializer>(at: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(at.as_secs_f64() * 1000.0)
}

/// A moment where a group of pods fell below `minimum` ready, by a write of `actor`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dip {
    pub at: Duration,
    pub group: String,
    pub ready: usize,
    pub pod: String,
    pub actor: String,
}

/// Replays readiness changes, grouping pods by the value of `group_label`, and returns every
/// change by `actor` that left a group with fewer than `minimum(group)` ready pods while it had
/// at least that many before. Drops by other actors (crashes, node failures) are not counted:
/// the invariant is about what `actor` itself does.
pub fn readiness_dips(
    entries: &[TimelineEntry],
    group_label: &str,
    minimum: impl Fn(&str) -> usize,
    actor: &str,
) -> Vec<Dip> {
    let mut ready: BTreeMap<String, BTreeMap<(String, String), bool>> = BTreeMap::new();
    let mut dips = Vec::new();
    for entry in entries {
        let Change::Readiness {
            namespace,
            pod,
            ready: now_ready,
            labels,
            actor: by,
        } = &entry.change
        else {
            continue;
        };
        let Some(group) = labels.get(group_label) else {
            continue;
        };
        let group = format!("{namespace}/{group}");
        let members = ready.entry(group.clone()).or_default();
        let before = members.values().filter(|r| **r).count();
        members.insert((namespace.clone(), pod.clone()), *now_ready);
        let after = members.values().filter(|r| **r).count();
        let needed = minimum(group.rsplit('/').next().unwrap_or_default());
        if by == actor && after < before && after < needed && before >= needed {
            dips.push(Dip {
                at: entry.at,
                group,
                ready: after,
                pod: pod.clone(),
                actor: by.clone(),
            });
        }
    }
    dips
}

/// For each group, the lowest number of ready pods seen after its first readiness change.
pub fn lowest_ready(entries: &[TimelineEntry], group_label: &str) -> BTreeMap<String, usize> {
    let mut ready: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    let mut lowest: BTreeMap<String, usize> = BTreeMap::new();
    for entry in entries {
        let Change::Readiness {
            namespace,
            pod,
            ready: now_ready,
            labels,
            ..
        } = &entry.change
        else {
            continue;
        };
        let Some(group) = labels.get(group_label) else {
            continue;
        };
        let group = format!("{namespace}/{group}");
        let members = ready.entry(group.clone()).or_default();
        members.insert(pod.clone(), *now_ready);
        let count = members.values().filter(|r| **r).count();
        let low = lowest.entry(group).or_insert(count);
        *low = (*low).min(count);
    }
    lowest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness(ms: u64, pod: &str, ready: bool, actor: &str) -> TimelineEntry {
        TimelineEntry {
            at: Duration::from_millis(ms),
            resource_version: ms,
            change: Change::Readiness {
                namespace: "default".into(),
                pod: pod.into(),
                ready,
                labels: [("dv".to_owned(), "a".to_owned())].into(),
                actor: actor.into(),
            },
        }
    }

    #[test]
    fn a_drop_below_the_minimum_by_the_actor_is_a_dip() {
        let entries = [
            readiness(1, "p0", true, "kubelet"),
            readiness(2, "p1", true, "kubelet"),
            readiness(3, "p2", true, "kubelet"),
            // The operator takes one down: 2 ready, still at the minimum of 2.
            readiness(4, "p0", false, "dvt-operator"),
            // A crash takes another: 1 ready, but not the operator's doing.
            readiness(5, "p1", false, "kubelet"),
            readiness(6, "p1", true, "kubelet"),
            readiness(7, "p0", true, "kubelet"),
            // Two operator actions in a row: the second leaves 1 ready.
            readiness(8, "p0", false, "dvt-operator"),
            readiness(9, "p1", false, "dvt-operator"),
        ];
        let dips = readiness_dips(&entries, "dv", |_| 2, "dvt-operator");
        assert_eq!(dips.len(), 1, "{dips:?}");
        assert_eq!(dips[0].pod, "p1");
        assert_eq!(dips[0].ready, 1);
        assert_eq!(dips[0].group, "default/a");
        assert_eq!(lowest_ready(&entries, "dv")["default/a"], 1);
    }

    #[test]
    fn pods_without_the_group_label_are_ignored() {
        let mut entry = readiness(1, "p0", false, "dvt-operator");
        if let Change::Readiness { labels, .. } = &mut entry.change {
            labels.clear();
        }
        assert!(readiness_dips(&[entry], "dv", |_| 5, "dvt-operator").is_empty());
    }
}
