//! Tests of the computed status: phases, conditions, members and what is held back.

use super::*;
use crate::controller::testing::example;
use crate::controller::validate::validate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::json;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

fn pod(ready: bool, revision: &str, restarts: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"controller-revision-hash": revision}},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}], "containerStatuses": [{"name": "charon", "image": "i", "imageID": "", "ready": ready, "restartCount": restarts}]},
    }))
    .unwrap()
}

fn set(revision: &str) -> StatefulSet {
    serde_json::from_value(
        json!({"metadata": {"name": "s"}, "status": {"replicas": 1, "updateRevision": revision}}),
    )
    .unwrap()
}

fn status_with(ready: &[bool], revisions: (&str, &str)) -> DistributedValidatorStatus {
    status_after(ready, revisions, &Outcome::default())
}

fn status_after(
    ready: &[bool],
    revisions: (&str, &str),
    outcome: &Outcome,
) -> DistributedValidatorStatus {
    let (dv, facts) = example("stader-4.yaml");
    let cluster = validate(&dv, &facts).unwrap();
    let pods: Vec<Pod> = ready.iter().map(|r| pod(*r, revisions.1, 2)).collect();
    let sets: Vec<StatefulSet> = ready.iter().map(|_| set(revisions.0)).collect();
    let observed: BTreeMap<String, Observed<'_>> = dv
        .spec
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m.name.clone(),
                Observed {
                    statefulset: sets.get(i),
                    pod: pods.get(i),
                    zone: Some("zone-a".into()),
                    template_written: false,
                },
            )
        })
        .collect();
    compute(&dv, &cluster, &observed, outcome, &now())
}

fn get<'a>(status: &'a DistributedValidatorStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn all_members_ready_is_available_and_fault_tolerant() {
    let status = status_with(&[true, true, true, true], ("r1", "r1"));
    assert_eq!(status.ready.as_deref(), Some("4/4"));
    assert_eq!(status.phase, Some(Phase::Available));
    assert_eq!(get(&status, types::AVAILABLE).status, "True");
    assert_eq!(get(&status, types::FAULT_TOLERANT).status, "True");
    assert_eq!(get(&status, types::PROGRESSING).status, "False");
    assert_eq!(status.disruption_budget, Some(1));
    assert_eq!(status.members[0].restarts, 2);
    assert_eq!(status.members[0].node.as_deref(), Some("node-1"));
}

#[test]
fn a_new_dv_is_progressing_until_first_available() {
    let status = status_with(&[true, false, false, false], ("r1", "r1"));
    assert_eq!(status.phase, Some(Phase::Progressing));
    assert_eq!(get(&status, types::QUORUM_AVAILABLE).status, "False");
    assert!(
        get(&status, types::AVAILABLE)
            .message
            .contains("not ready: bravo, charlie, delta")
    );
}

#[test]
fn a_changed_revision_marks_members_outdated() {
    let status = status_with(&[true, true, true, true], ("r2", "r1"));
    assert!(status.members.iter().all(|m| m.outdated));
    let progressing = get(&status, types::PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "MembersOutdated")
    );
}

#[test]
fn a_rollout_held_by_the_budget_says_why() {
    let held = Outcome {
        waiting: vec![
            "rollout waits: 3 ready, 3 needed to sign; no member can be taken down".into(),
        ],
        held_by_budget: true,
        ..Outcome::default()
    };
    let status = status_after(&[true, true, true, false], ("r2", "r1"), &held);
    let progressing = get(&status, types::PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "RolloutHeldByBudget")
    );
    assert_eq!(
        progressing.message,
        "members running an older revision: alpha, bravo, charlie, delta; rollout waits: 3 ready, 3 needed to sign; no member can be taken down"
    );
}

#[test]
fn a_repair_that_waits_says_why() {
    let waiting = Outcome {
        waiting: vec!["delta is broken (CrashLoopBackOff); restart delay not over".into()],
        ..Outcome::default()
    };
    let status = status_after(&[true, true, true, false], ("r1", "r1"), &waiting);
    let progressing = get(&status, types::PROGRESSING);
    assert_eq!(progressing.reason, "MembersStarting");
    assert_eq!(
        progressing.message,
        "waiting for members to become ready: delta; delta is broken (CrashLoopBackOff); restart delay not over"
    );
}

#[test]
fn conditions_keep_their_transition_time_while_unchanged() {
    let (mut dv, facts) = example("stader-4.yaml");
    let cluster = validate(&dv, &facts).unwrap();
    let first = compute(&dv, &cluster, &BTreeMap::new(), &Outcome::default(), &now());
    dv.status = Some(first.clone());
    let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap());
    let second = compute(&dv, &cluster, &BTreeMap::new(), &Outcome::default(), &later);
    assert_eq!(
        first, second,
        "an unchanged DV computes an unchanged status"
    );
}

#[test]
fn placement_details_may_wait_but_readiness_and_restarts_may_not() {
    let before = status_with(&[false, false, false, false], ("r1", "r1"));
    let mut scheduled = before.clone();
    scheduled.members[0].node = Some("node-9".into());
    scheduled.members[0].zone = Some("zone-d".into());
    scheduled.conditions[0].message.push_str(" (more words)");
    assert!(only_details_differ(&before, &scheduled));
    assert!(
        !only_details_differ(&before, &before),
        "no difference at all"
    );

    let mut ready = scheduled.clone();
    ready.members[0].ready = true;
    assert!(!only_details_differ(&before, &ready));
    let mut restarted = scheduled.clone();
    restarted.members[1].restarts += 1;
    assert!(!only_details_differ(&before, &restarted));
    let mut flipped = scheduled.clone();
    flipped.conditions[0].status = "Unknown".into();
    assert!(!only_details_differ(&before, &flipped));
    let available = status_with(&[true, true, true, true], ("r1", "r1"));
    assert!(!only_details_differ(&before, &available));
}

#[test]
fn a_member_shows_outdated_until_its_new_template_has_an_update_revision() {
    let current = set("rev-1");
    let running = pod(true, "rev-1", 0);
    let mut seen = Observed {
        statefulset: Some(&current),
        pod: Some(&running),
        zone: None,
        template_written: true,
    };
    // Written this pass: the cached StatefulSet still names the old revision.
    assert!(shows_outdated(&seen));
    assert!(
        !is_outdated(&seen),
        "the planner restarts on revisions only"
    );
    seen.template_written = false;
    assert!(!shows_outdated(&seen));
    // Cached with the new template, not yet observed by the StatefulSet controller.
    let mut unobserved = set("rev-1");
    unobserved.metadata.generation = Some(2);
    unobserved.status.as_mut().unwrap().observed_generation = Some(1);
    seen.statefulset = Some(&unobserved);
    assert!(shows_outdated(&seen));
    // A StatefulSet without a pod yet is not outdated: there is nothing to roll.
    seen.pod = None;
    assert!(!shows_outdated(&seen));
}

/// The seed's 2 + 2 shape is sound (no class signs alone; losing a class stops signing with
/// any spread over two classes, said as a fact); one class holding t shares is False and says
/// what to change; two members on one client while five are allowed is False too.
#[test]
fn diversity_is_false_only_for_a_risk_the_user_can_fix() {
    let (dv, facts) = example("stader-4.yaml");
    let cluster = validate(&dv, &facts).unwrap();
    let judged = |cluster: &Cluster, allowed: usize| {
        let conditions = diversity_conditions(cluster, allowed, &[], None, &now());
        let find = |type_: &str| {
            let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
            (c.status.clone(), c.message.clone())
        };
        (
            find(types::CLIENT_DIVERSITY),
            find(types::OPERATOR_DIVERSITY),
        )
    };
    let (clients, operators) = judged(&cluster, 5);
    assert_eq!(clients.0, "True", "{}", clients.1);
    assert_eq!(operators.0, "True", "{}", operators.1);
    assert!(
        operators.1.contains("operator classes: permissioned 2, permissionless 2; none can sign alone (at most 2 < t=3); losing permissioned (2) stops signing, as with any spread over 2 operator classes; survives 0 failing operator classes"),
        "{}",
        operators.1
    );

    let mut one_class = cluster.clone();
    one_class.roster[2].operator_class = crate::api::OperatorClass::Permissioned;
    let (_, operators) = judged(&one_class, 5);
    assert_eq!(operators.0, "False");
    assert!(
        operators.1.contains("permissioned holds 3 ≥ t=3 shares and could sign alone: move members to other operator classes"),
        "{}",
        operators.1
    );

    let mut shared_client = cluster.clone();
    shared_client.roster[0].client = Some(crate::api::ValidatorClient::Teku);
    let (clients, _) = judged(&shared_client, 5);
    assert_eq!(clients.0, "False");
    assert!(
        clients.1.contains("losing teku (2 members) stops signing, which at most 1 per one of the 5 available clients would avoid: move members to other clients"),
        "{}",
        clients.1
    );
}
