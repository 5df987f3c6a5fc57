//! Tests of `kubectl dv`'s views and patches.

use super::*;
use crate::api::{DistributedValidatorStatus, MemberStatus, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};

fn dv() -> DistributedValidator {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stader-4.yaml"),
    )
    .unwrap();
    let mut dv = crate::cli::plan::read_dv(&text).unwrap();
    dv.metadata.namespace = Some("default".into());
    dv.metadata.generation = Some(2);
    let at = |s: &str| Time(s.parse().unwrap());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: at("2026-12-01T10:00:00Z"),
        observed_generation: Some(2),
    };
    dv.status = Some(DistributedValidatorStatus {
        observed_generation: Some(2),
        threshold: Some(3),
        fault_tolerance: Some(1),
        ready_members: 3,
        ready: Some("3/4".into()),
        disruption_budget: Some(0),
        phase: Some(Phase::Degraded),
        members: ["alpha", "bravo", "charlie", "delta"]
            .iter()
            .enumerate()
            .map(|(i, name)| MemberStatus {
                name: (*name).into(),
                index: i as u32,
                zone: Some(format!("zone-{}", ['a', 'b', 'c', 'd'][i])),
                node: Some(format!("node-{i}")),
                ready: i != 1,
                outdated: true,
                stranded: i == 1,
                ..MemberStatus::default()
            })
            .collect(),
        conditions: vec![
            condition(
                "Progressing",
                "True",
                "RolloutHeldByBudget",
                "members running an older revision: alpha, bravo, charlie, delta; rollout waits: 3 ready, 3 needed to sign; no member can be taken down",
            ),
            condition(
                "PlacementSatisfied",
                "True",
                "SurvivesZoneOutage",
                "4 zones; one zone down leaves 3 of 4",
            ),
        ],
    });
    dv
}

fn event(name: &str, reason: &str, at: &str) -> Event {
    Event {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(at.parse().unwrap())),
        type_: Some("Normal".into()),
        reason: Some(reason.into()),
        note: Some(format!("{reason} note")),
        ..Event::default()
    }
}

#[test]
fn a_held_rollout_shows_the_budget_the_reason_and_no_next_member() {
    let mut dv = dv();
    dv.metadata.annotations = Some(BTreeMap::from([(
        "restart.dvt.io/charlie".to_owned(),
        "2026-12-01T10:05:00Z".to_owned(),
    )]));
    let events: Vec<Event> = (0..10)
        .map(|i| {
            event(
                &format!("e{i}"),
                &format!("R{i}"),
                &format!("2026-12-01T10:0{i}:00Z"),
            )
        })
        .collect();
    let view = view(&dv, &events, "2026-12-01T10:10:00Z".parse().unwrap());
    assert_eq!(view.budget, Some(0));
    assert_eq!(view.rollout.reason, "RolloutHeldByBudget");
    assert_eq!(view.rollout.next, None);
    assert_eq!(view.rollout.pending, ["alpha", "bravo", "charlie", "delta"]);
    assert_eq!(
        view.member_rows[2].restart_requested.as_deref(),
        Some("2026-12-01T10:05:00Z")
    );
    assert_eq!(view.member_rows[0].restart_requested, None);
    assert_eq!(view.events.len(), EVENTS_SHOWN);
    assert_eq!(view.events.last().unwrap().reason, "R9");
    assert_eq!(view.events.last().unwrap().age_seconds, 60);
    let text = render(&view, Palette { colour: false });
    assert!(
        text.starts_with(
            "stader-4 (default)  Degraded\nReady 3/4  threshold 3  tolerance 1  budget 0 "
        ),
        "{text}"
    );
    assert!(
        text.contains("Rollout: RolloutHeldByBudget members running an older revision"),
        "{text}"
    );
    assert!(
        text.contains("pending: alpha, bravo, charlie, delta; next: none now"),
        "{text}"
    );
    assert!(
        text.contains("restart requested 2026-12-01T10:05:00Z, pending"),
        "{text}"
    );
    assert!(
        text.contains("outdated; stranded: node unreachable"),
        "{text}"
    );
    assert!(
        text.contains("PlacementSatisfied: True SurvivesZoneOutage: 4 zones"),
        "{text}"
    );
    assert!(text.contains("\n   60s  Normal  R9: R9 note\n"), "{text}");
    assert!(!text.contains('\x1b'), "no colour when asked for none");
    assert!(render(&view, Palette { colour: true }).contains("\x1b[33m0\x1b[0m"));
}

#[test]
fn with_budget_the_first_ready_outdated_member_is_next() {
    let mut dv = dv();
    let status = dv.status.as_mut().unwrap();
    status.disruption_budget = Some(1);
    status.members[1].ready = true;
    let view = view(&dv, &[], Timestamp::now());
    assert_eq!(view.rollout.next.as_deref(), Some("alpha"));
    dv.metadata.annotations = Some(BTreeMap::from([(
        "dvt.io/paused".to_owned(),
        "true".to_owned(),
    )]));
    let paused = super::view(&dv, &[], Timestamp::now());
    assert!(paused.paused);
    assert_eq!(paused.rollout.next, None);
}

#[test]
fn patches_name_the_annotations_the_operator_reads() {
    let at: Timestamp = "2026-12-01T10:00:00.5Z".parse().unwrap();
    assert_eq!(
        restart_patch(Some("bravo"), at),
        serde_json::json!({"metadata": {"annotations": {"restart.dvt.io/bravo": "2026-12-01T10:00:00Z"}}})
    );
    assert_eq!(
        restart_patch(None, at),
        serde_json::json!({"metadata": {"annotations": {"dvt.io/restart-all": "2026-12-01T10:00:00Z"}}})
    );
    assert_eq!(
        pause_patch(false),
        serde_json::json!({"metadata": {"annotations": {"dvt.io/paused": null}}})
    );
}

#[test]
fn ages_are_short_like_kubectls() {
    assert_eq!(short_age(5), "5s");
    assert_eq!(short_age(600), "10m");
    assert_eq!(short_age(3 * 3600), "3h");
    assert_eq!(short_age(3 * 86400), "3d");
}

#[test]
fn a_remote_member_shows_when_it_was_last_seen_and_a_local_one_why_it_is_not_ready() {
    let mut dv = dv();
    let now: Timestamp = "2026-12-01T10:10:00Z".parse().unwrap();
    let status = dv.status.as_mut().unwrap();
    status.members[2].remote = true;
    status.members[2].node = None;
    status.members[2].zone = None;
    status.members[2].ready = false;
    status.members[2].last_seen = Some(Time("2026-12-01T10:05:00Z".parse().unwrap()));
    status.members[0].ready = false;
    status.members[0].not_ready_reason = Some("beacon node syncing".into());
    let view = view(&dv, &[], now);
    let text = render(&view, Palette { colour: false });
    let charlie = text.lines().find(|l| l.starts_with("charlie")).unwrap();
    assert!(
        charlie.contains("(remote)") && charlie.contains("remote, not seen for 5m"),
        "{charlie}"
    );
    let alpha = text.lines().find(|l| l.starts_with("alpha")).unwrap();
    assert!(alpha.contains("not ready: beacon node syncing"), "{alpha}");
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["memberRows"][2]["remote"], true);
    assert_eq!(json["memberRows"][2]["lastSeen"], "5m");
    assert!(
        json["memberRows"][1].get("remote").is_none(),
        "local rows unchanged"
    );
}

#[test]
fn a_members_client_change_shows_in_its_notes() {
    let mut dv = dv();
    let now: Timestamp = "2026-12-01T10:10:00Z".parse().unwrap();
    let status = dv.status.as_mut().unwrap();
    let change = |phase, message: Option<&str>| crate::api::ClientMove {
        from: crate::api::ValidatorClient::Lighthouse,
        to: crate::api::ValidatorClient::Teku,
        from_image: "sigp/lighthouse:v7.1.0".into(),
        phase,
        file: "/validator/data/slashing-protection/lighthouse-to-teku.json".into(),
        sha256: Some("5e".repeat(32)),
        validators: Some(2),
        message: message.map(Into::into),
        started_at: None,
        finished_at: None,
    };
    status.members[0].client_move = Some(change(crate::api::ClientMovePhase::Moved, None));
    status.members[2].client_move = Some(change(
        crate::api::ClientMovePhase::Failed,
        Some("export-slashing-protection exited 1: no database"),
    ));
    let text = render(&view(&dv, &[], now), Palette { colour: false });
    let alpha = text.lines().find(|l| l.starts_with("alpha")).unwrap();
    assert!(
        alpha.contains(
            "moved lighthouse to teku with 2 validator(s)' history (sha256 5e5e5e5e5e5e…)"
        ),
        "{alpha}"
    );
    let charlie = text.lines().find(|l| l.starts_with("charlie")).unwrap();
    assert!(
        charlie.contains("client change lighthouse to teku failed, stopped: export-slashing-protection exited 1: no database"),
        "{charlie}"
    );
}
