//! Tests of the restart planner, including property tests of the quorum budget.

use proptest::prelude::*;

use super::*;

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("in range")
}

fn settings(threshold: u32) -> Settings {
    Settings {
        threshold,
        max_unavailable: 1,
        min_ready: Duration::from_secs(30),
        restart_delay: Duration::from_secs(60),
        restart_backoff: Duration::from_secs(30),
        max_restart_backoff: Duration::from_secs(600),
        paused: false,
    }
}

fn healthy(name: &str, index: u32) -> Member {
    Member {
        name: name.to_owned(),
        index,
        has_pod: true,
        terminating: false,
        ready: true,
        ready_since: Some(t(-3600)),
        unready_since: None,
        broken: None,
        node: NodeHealth::Ready,
        outdated: false,
        last_restart: None,
        consecutive_restarts: 0,
        restart_requested: false,
    }
}

fn four() -> Vec<Member> {
    ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, n)| healthy(n, i as u32))
        .collect()
}

fn restarted(plan: &Plan) -> Vec<(String, RestartKind)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Restart { member, kind, .. } => Some((member.clone(), *kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_outdated_dv_rolls_one_member_at_a_time_in_index_order() {
    let mut members = four();
    for m in &mut members {
        m.outdated = true;
    }
    let plan = plan(&members, &settings(3), t(0));
    assert_eq!(plan.budget, 1);
    assert_eq!(restarted(&plan), [("a".to_owned(), RestartKind::Rollout)]);
}

/// Found by the budget's property test: a member whose node fell silent while its pod still
/// said Ready was rolled (an eviction its node cannot carry out) and counted toward the budget,
/// so that a second member could be taken down while the first may already be down.
#[test]
fn a_member_on_a_silent_node_is_neither_rolled_nor_counted_as_ready() {
    let mut members = four();
    for m in &mut members {
        m.outdated = true;
    }
    members[0].node = NodeHealth::Unreachable;
    let plan = plan(&members, &settings(3), t(0));
    assert_eq!(plan.budget, 0, "three members surely up, t = 3");
    assert!(restarted(&plan).is_empty(), "{:?}", plan.actions);
    assert!(plan.held_by_budget);
    assert_eq!(plan.stranded, ["a"]);
}

#[test]
fn the_next_member_waits_for_the_previous_to_be_ready_for_min_ready_seconds() {
    let mut members = four();
    for m in &mut members {
        m.outdated = true;
    }
    members[0].outdated = false;
    members[0].last_restart = Some(t(-20));
    members[0].ready_since = Some(t(-10));
    let plan = plan(&members, &settings(3), t(0));
    assert!(restarted(&plan).is_empty());
    assert_eq!(plan.wake_at, Some(t(20)));
    let later = super::plan(&members, &settings(3), t(20));
    assert_eq!(restarted(&later), [("b".to_owned(), RestartKind::Rollout)]);
}

#[test]
fn no_rollout_without_budget_but_broken_members_are_repaired() {
    let mut members = four();
    for m in &mut members {
        m.outdated = true;
    }
    members[3].ready = false;
    members[3].ready_since = None;
    members[3].unready_since = Some(t(-120));
    members[3].broken = Some(Broken::Waiting("CrashLoopBackOff".into()));
    let plan = plan(&members, &settings(3), t(0));
    assert_eq!(plan.budget, 0);
    assert_eq!(restarted(&plan), [("d".to_owned(), RestartKind::Repair)]);
    assert!(plan.held_by_budget);
    assert!(
        plan.waiting.contains(
            &"rollout waits: 3 ready, 3 needed to sign; no member can be taken down".to_owned()
        ),
        "{:?}",
        plan.waiting
    );
}

#[test]
fn a_stranded_member_restarted_long_ago_holds_the_rollout_by_budget_not_as_a_restart() {
    let mut members = four();
    for m in &mut members {
        m.outdated = true;
        m.last_restart = Some(t(-600));
    }
    members[1].ready = false;
    members[1].ready_since = None;
    members[1].unready_since = Some(t(-30));
    members[1].node = NodeHealth::Unreachable;
    let plan = plan(&members, &settings(3), t(0));
    assert!(restarted(&plan).is_empty());
    assert!(plan.held_by_budget);
    assert_eq!(plan.stranded, ["b"]);
    assert_eq!(
        plan.waiting,
        ["rollout waits: 3 ready, 3 needed to sign; no member can be taken down"]
    );
}

#[test]
fn a_requested_restart_is_a_rollout_step_that_says_so() {
    let mut members = four();
    members[2].outdated = true;
    members[2].restart_requested = true;
    let plan = plan(&members, &settings(3), t(0));
    assert_eq!(
        plan.actions,
        [Action::Restart {
            member: "c".into(),
            kind: RestartKind::Rollout,
            reason: "restart requested".into()
        }]
    );
}

#[test]
fn a_rollout_with_budget_is_not_held() {
    let mut members = four();
    for m in &mut members {
        m.outdated = true;
    }
    let plan = plan(&members, &settings(3), t(0));
    assert!(!plan.held_by_budget);
    assert_eq!(restarted(&plan), [("a".to_owned(), RestartKind::Rollout)]);
}

#[test]
fn repairs_back_off_exponentially() {
    let mut members = four();
    members[1].ready = false;
    members[1].unready_since = Some(t(-1000));
    members[1].broken = Some(Broken::Waiting("CrashLoopBackOff".into()));
    members[1].last_restart = Some(t(-40));
    members[1].consecutive_restarts = 2;
    // Backoff after two restarts: 60s.
    let plan = plan(&members, &settings(3), t(0));
    assert!(restarted(&plan).is_empty());
    assert_eq!(plan.wake_at, Some(t(20)));
    assert_eq!(restart_backoff(10, &settings(3)), Duration::from_secs(600));
}

#[test]
fn quorum_lost_leaves_healthy_unready_members_alone() {
    let mut members = four();
    for m in &mut members {
        m.ready = false;
        m.ready_since = None;
        m.unready_since = Some(t(-500));
        m.outdated = true;
    }
    members[0].broken = Some(Broken::Waiting("CrashLoopBackOff".into()));
    members[1].broken = Some(Broken::Waiting("ImagePullBackOff".into()));
    let plan = plan(&members, &settings(3), t(0));
    assert_eq!(
        restarted(&plan),
        [
            ("a".to_owned(), RestartKind::Repair),
            ("b".to_owned(), RestartKind::Repair)
        ]
    );
}

#[test]
fn stranded_members_are_reported_and_never_replaced_until_their_node_is_gone() {
    let mut members = four();
    members[2].ready = false;
    members[2].node = NodeHealth::Unreachable;
    members[2].broken = Some(Broken::Waiting("CrashLoopBackOff".into()));
    members[2].unready_since = Some(t(-10_000));
    let plan = plan(&members, &settings(3), t(0));
    assert!(plan.actions.is_empty());
    assert_eq!(plan.stranded, ["c"]);
    members[2].node = NodeHealth::Gone;
    let plan = super::plan(&members, &settings(3), t(0));
    assert!(matches!(&plan.actions[0], Action::ForceDelete { member, .. } if member == "c"));
}

#[test]
fn a_paused_dv_is_left_alone() {
    let mut members = four();
    members[0].outdated = true;
    members[1].ready = false;
    members[1].broken = Some(Broken::OomKilled);
    members[1].unready_since = Some(t(-10_000));
    let mut paused = settings(3);
    paused.paused = true;
    assert!(plan(&members, &paused, t(0)).actions.is_empty());
}

fn arb_member(index: u32) -> impl Strategy<Value = Member> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..4,
        0u8..3,
        any::<bool>(),
        proptest::option::of(-2000i64..0),
        0u32..6,
        -2000i64..0,
    )
        .prop_map(
            move |(
                has_pod,
                terminating,
                ready,
                broken,
                node,
                outdated,
                last,
                consecutive,
                since,
            )| Member {
                name: format!("m{index}"),
                index,
                has_pod,
                terminating,
                ready: ready && has_pod && !terminating,
                ready_since: (ready && has_pod && !terminating).then(|| t(since)),
                unready_since: (!(ready && has_pod && !terminating)).then(|| t(since)),
                broken: match broken {
                    0 => Some(Broken::Waiting("CrashLoopBackOff".into())),
                    1 => Some(Broken::OomKilled),
                    _ => None,
                },
                node: [NodeHealth::Ready, NodeHealth::Unreachable, NodeHealth::Gone][node as usize],
                outdated,
                last_restart: last.map(t),
                consecutive_restarts: consecutive,
                restart_requested: false,
            },
        )
}

fn arb_cluster() -> impl Strategy<Value = (Vec<Member>, Settings)> {
    (3u32..12)
        .prop_flat_map(|n| {
            let members: Vec<_> = (0..n).map(arb_member).collect();
            (members, Just(n), 1u32..4, any::<bool>())
        })
        .prop_map(|(members, n, max_unavailable, paused)| {
            let mut s = settings(crate::domain::quorum::default_threshold(n));
            s.max_unavailable = max_unavailable;
            s.paused = paused;
            (members, s)
        })
}

#[test]
fn each_action_says_how_it_reaches_the_pod_and_what_it_does_to_the_repair_count() {
    let rollout = Action::Restart {
        member: "a".into(),
        kind: RestartKind::Rollout,
        reason: "outdated".into(),
    };
    let repair = Action::Restart {
        member: "b".into(),
        kind: RestartKind::Repair,
        reason: "broken".into(),
    };
    let gone = Action::ForceDelete {
        member: "c".into(),
        reason: "node gone".into(),
    };
    assert_eq!(rollout.disruption(), Disruption::Evict);
    assert_eq!(repair.disruption(), Disruption::Delete);
    assert_eq!(gone.disruption(), Disruption::ForceDelete);
    assert_eq!((rollout.member(), rollout.reason()), ("a", "outdated"));
    assert_eq!((gone.member(), gone.reason()), ("c", "node gone"));
    // A repair's backoff grows with every repair in a row; anything else starts it over.
    assert_eq!(repair.consecutive_repairs(2), 3);
    assert_eq!(rollout.consecutive_repairs(2), 0);
    assert_eq!(gone.consecutive_repairs(2), 0);
}

#[test]
fn the_next_wake_is_the_earliest_of_what_waits() {
    assert_eq!(next_wake(None, None, None), None);
    assert_eq!(next_wake(Some(t(30)), None, Some(t(10))), Some(t(10)));
    assert_eq!(next_wake(Some(t(3)), Some(t(5)), Some(t(10))), Some(t(3)));
    assert_eq!(next_wake(None, Some(t(5)), None), Some(t(5)));
}

proptest! {
    #[test]
    fn never_takes_ready_members_below_threshold_nor_beyond_max_unavailable((members, settings) in arb_cluster()) {
        let plan = plan(&members, &settings, t(0));
        let ready = members.iter().filter(|m| m.ready).count() as i64;
        let taken: Vec<&str> = plan.actions.iter().map(|a| match a {
            Action::Restart { member, .. } | Action::ForceDelete { member, .. } => member.as_str(),
        }).filter(|name| members.iter().any(|m| m.name == *name && m.ready)).collect();
        let after = ready - taken.len() as i64;
        prop_assert!(taken.is_empty() || after >= i64::from(settings.threshold),
            "{} ready, {} taken, threshold {}", ready, taken.len(), settings.threshold);
        prop_assert!(taken.len() as u32 <= settings.max_unavailable);
        if settings.paused {
            prop_assert!(plan.actions.is_empty());
        }
        // Never two actions on one member, never a restart on an unreachable node.
        let mut names: Vec<&str> = plan.actions.iter().map(|a| match a {
            Action::Restart { member, .. } | Action::ForceDelete { member, .. } => member.as_str(),
        }).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        prop_assert_eq!(names.len(), count);
        for action in &plan.actions {
            if let Action::Restart { member, .. } = action {
                let m = members.iter().find(|m| &m.name == member).unwrap();
                prop_assert_eq!(m.node, NodeHealth::Ready);
            }
        }
    }

    #[test]
    fn a_broken_member_is_eventually_repaired((members, settings) in arb_cluster()) {
        prop_assume!(!settings.paused);
        // Far enough in the future, every backoff and delay has passed.
        let later = t(1_000_000);
        let plan = plan(&members, &settings, later);
        for m in &members {
            if m.broken.is_some() && !m.ready && !m.terminating && m.has_pod && m.node == NodeHealth::Ready {
                prop_assert!(plan.actions.iter().any(|a| matches!(a, Action::Restart { member, kind: RestartKind::Repair, .. } if member == &m.name)),
                    "{} was not repaired", m.name);
            }
        }
    }
}
