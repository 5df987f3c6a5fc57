//! Tests of the chaos run's invariants on hand-made timelines.

use super::*;

fn readiness(at_ms: u64, pod: &str, member: &str, ready: bool, actor: &str) -> TimelineEntry {
    TimelineEntry {
        at: Duration::from_millis(at_ms),
        resource_version: at_ms,
        change: Change::Readiness {
            namespace: "default".into(),
            pod: pod.into(),
            ready,
            labels: BTreeMap::from([
                (LABEL_DV.to_owned(), "dv".to_owned()),
                (LABEL_MEMBER.to_owned(), member.to_owned()),
            ]),
            actor: actor.into(),
        },
    }
}

#[test]
fn a_second_ready_pod_of_one_member_is_found_and_a_replacement_is_not() {
    let replaced = [
        readiness(1, "dv-a-0", "a", true, "kubelet"),
        readiness(2, "dv-a-0", "a", false, "dvt-operator"),
        readiness(3, "dv-a-0", "a", true, "kubelet"),
        readiness(4, "dv-b-0", "b", true, "kubelet"),
    ];
    assert!(two_ready_pods_for_one_member(&replaced).is_empty());
    // Two pods of ordinal 0 of one member (a replacement ready before the old one stopped).
    let doubled = [
        readiness(1, "dv-a-0", "a", true, "kubelet"),
        readiness(2, "old-dv-a-0", "a", true, "kubelet"),
    ];
    assert_eq!(two_ready_pods_for_one_member(&doubled).len(), 1);
}

#[test]
fn only_the_operators_drops_below_threshold_count() {
    let thresholds = BTreeMap::from([("dv".to_owned(), 2)]);
    let mut entries = vec![
        readiness(1, "dv-a-0", "a", true, "kubelet"),
        readiness(2, "dv-b-0", "b", true, "kubelet"),
        readiness(3, "dv-a-0", "a", false, "kubelet"),
    ];
    assert!(
        operator_dips(&entries, &thresholds).is_empty(),
        "a crash is not the operator's"
    );
    entries.push(readiness(4, "dv-a-0", "a", true, "kubelet"));
    entries.push(readiness(5, "dv-b-0", "b", false, FIELD_MANAGER));
    assert_eq!(operator_dips(&entries, &thresholds).len(), 1);
}

#[test]
fn an_extra_replica_may_live_briefly_and_must_go() {
    let write = |at: u64, name: &str, verb: &'static str| TimelineEntry {
        at: Duration::from_secs(at),
        resource_version: at,
        change: Change::Write {
            verb,
            resource: "pods".into(),
            namespace: "default".into(),
            name: name.into(),
            actor: "x".into(),
            client: String::new(),
        },
    };
    let entries = [
        write(1, "dv-a-0", "ADDED"),
        write(2, "dv-a-1", "ADDED"),
        write(5, "dv-a-1", "DELETED"),
        write(10, "dv-b-1", "ADDED"),
        write(45, "dv-b-1", "DELETED"),
        write(46, "dv-c-1", "ADDED"),
    ];
    assert_eq!(
        lingering_extra_replicas(&entries, EXTRA_REPLICA_WITHIN),
        [
            "default/dv-b-1 lived 35s",
            "default/dv-c-1 still there at the end"
        ]
    );
    // Both pods of a hand-added replica ready at once are judged there, not as a double.
    let doubled = [
        readiness(1, "dv-a-0", "a", true, "kubelet"),
        readiness(2, "dv-a-1", "a", true, "kubelet"),
    ];
    assert!(two_ready_pods_for_one_member(&doubled).is_empty());
}

#[test]
fn deleted_claims_and_secrets_are_named() {
    let write = |resource: &str, verb: &'static str| TimelineEntry {
        at: Duration::ZERO,
        resource_version: 1,
        change: Change::Write {
            verb,
            resource: resource.into(),
            namespace: "default".into(),
            name: "x".into(),
            actor: "someone".into(),
            client: String::new(),
        },
    };
    let entries = [
        write("persistentvolumeclaims", "ADDED"),
        write("pods", "DELETED"),
        write("secrets", "DELETED"),
    ];
    assert_eq!(
        deleted_data(&entries),
        ["secrets default/x deleted by someone"]
    );
}

#[test]
fn the_same_seed_makes_the_same_choices() {
    let (mut a, mut b) = (Random(7), Random(7));
    let first: Vec<usize> = (0..20).map(|_| a.below(11)).collect();
    let second: Vec<usize> = (0..20).map(|_| b.below(11)).collect();
    assert_eq!(first, second);
    let mut other = Random(8);
    assert_ne!(first, (0..20).map(|_| other.below(11)).collect::<Vec<_>>());
}
