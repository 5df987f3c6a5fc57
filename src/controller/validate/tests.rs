//! Tests of the validate step: what blocks a member, what invalidates a DV.

use super::*;
use crate::api::reasons;
use crate::controller::model::{ClientChangeHeld, MemberProblem};
use crate::controller::testing::example;

#[test]
fn the_examples_validate_with_every_member_buildable() {
    for file in ["stader-4.yaml", "stader-7.yaml"] {
        let (dv, facts) = example(file);
        let cluster = validate(&dv, &facts).unwrap();
        assert_eq!(cluster.members.len(), dv.spec.members.len(), "{file}");
        assert!(cluster.blocked.is_empty());
    }
}

#[test]
fn a_missing_secret_blocks_only_its_member_and_is_named() {
    let (dv, mut facts) = example("stader-4.yaml");
    facts.secrets.remove("stader-4-bravo-keystore");
    let cluster = validate(&dv, &facts).unwrap();
    assert_eq!(cluster.members.len(), 3);
    assert_eq!(cluster.blocked.len(), 1);
    assert_eq!(cluster.blocked[0].member, "bravo");
    assert!(
        cluster.blocked[0].why.contains("stader-4-bravo-keystore"),
        "{:?}",
        cluster.blocked
    );
}

#[test]
fn a_lock_for_another_cluster_size_is_a_mismatch() {
    let (mut dv, facts) = example("stader-4.yaml");
    dv.spec.members.pop();
    dv.spec.threshold = Some(3);
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), reasons::LOCK_MISMATCH);
    assert!(
        invalid
            .message()
            .contains("4 operators but the DV has 3 members"),
        "{}",
        invalid.message()
    );
}

#[test]
fn a_missing_lock_is_reported_as_such() {
    let (dv, mut facts) = example("stader-4.yaml");
    facts.lock = Err("ConfigMap \"stader-4-lock\" does not exist".into());
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), reasons::LOCK_UNAVAILABLE);
    assert!(invalid.message().contains("stader-4-lock"));
}

#[test]
fn a_changed_secret_changes_only_its_members_inputs_hash() {
    let (dv, mut facts) = example("stader-4.yaml");
    let before = validate(&dv, &facts).unwrap();
    facts.secrets.insert(
        "stader-4-charlie-keystore".into(),
        SecretFacts {
            resource_version: "2".into(),
        },
    );
    let after = validate(&dv, &facts).unwrap();
    for (b, a) in before.members.iter().zip(&after.members) {
        assert_eq!(
            b.inputs_hash != a.inputs_hash,
            a.name == "charlie",
            "{}",
            a.name
        );
    }
}

#[test]
fn a_client_change_moves_the_history_one_member_at_a_time() {
    let (mut dv, facts) = example("stader-4.yaml");
    let first = validate(&dv, &facts).unwrap();
    dv.status = Some(crate::api::DistributedValidatorStatus {
        members: first
            .members
            .iter()
            .map(|m| crate::api::MemberStatus {
                name: m.name.clone(),
                validator_client: Some(m.client),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    let running: Vec<ValidatorClient> = first.members.iter().map(|m| m.client).collect();
    // Alpha moves to the client no one runs; beta to the one alpha leaves.
    let new_alpha = ValidatorClient::ALL
        .into_iter()
        .find(|c| !running.contains(c))
        .unwrap();
    dv.spec.client_diversity.clients = ValidatorClient::ALL.to_vec();
    dv.spec.members[0].validator_client = Some(new_alpha);
    dv.spec.members[1].validator_client = Some(running[0]);
    let moving = validate(&dv, &facts).unwrap();
    assert_eq!(moving.members[0].client, new_alpha);
    assert_eq!(
        moving.members[0].migration,
        Some(crate::controller::model::Migration {
            from: running[0],
            to: new_alpha,
            from_image: crate::controller::validate::default_client_image(running[0]).to_owned(),
        })
    );
    // The second change waits for the first: one member moves at a time.
    assert_eq!(moving.members[1].client, running[1]);
    assert_eq!(moving.members[1].migration, None);
    assert_eq!(
        moving.client_changes_held,
        [ClientChangeHeld {
            member: moving.members[1].name.clone(),
            running: running[1],
            wanted: running[0],
            why: crate::domain::client_moves::HoldReason::AnotherMoves("alpha".into()),
        }]
    );
    assert!(
        moving.client_changes_held[0]
            .message()
            .contains("member alpha changes client first")
    );
    // Only alpha's pod changes, by the two steps around its new client's own.
    let built = crate::controller::build::build(&moving);
    let before = crate::controller::build::build(&first);
    assert_ne!(built, before);

    // Redirected while the move is under way (recorded, not finished): the move goes on, steps
    // and all, and the new change waits for it.
    let mut redirected = dv.clone();
    let alpha_status = &mut redirected.status.as_mut().unwrap().members[0];
    alpha_status.client_move = Some(crate::api::ClientMove {
        from: running[0],
        to: new_alpha,
        from_image: "recorded/image:1".into(),
        phase: crate::api::ClientMovePhase::Moving,
        file: String::new(),
        sha256: None,
        validators: None,
        message: None,
        started_at: None,
        finished_at: None,
    });
    redirected.spec.members[0].validator_client = Some(running[2]);
    redirected.spec.members[1].validator_client = Some(running[1]);
    let going_on = validate(&redirected, &facts).unwrap();
    assert_eq!(going_on.members[0].client, new_alpha);
    assert_eq!(
        going_on.members[0]
            .migration
            .as_ref()
            .map(|m| (m.from, m.to, m.from_image.as_str())),
        Some((running[0], new_alpha, "recorded/image:1"))
    );
    assert!(
        going_on.client_changes_held[0]
            .message()
            .contains("the move finishes first"),
        "{}",
        going_on.client_changes_held[0].message()
    );

    // Moved by hand and said so: no steps.
    dv.metadata.annotations = Some(BTreeMap::from([(
        "slashing-protection.dvt.io/alpha".to_owned(),
        new_alpha.as_str().to_owned(),
    )]));
    let released = validate(&dv, &facts).unwrap();
    assert_eq!(released.members[0].client, new_alpha);
    assert_eq!(released.members[0].migration, None);
    // ... and the check step takes the annotation's word for the history.
    assert!(released.members[0].history_moved_by_hand);
    assert!(!moving.members[0].history_moved_by_hand);
    // A release for another client does not count.
    dv.metadata.annotations = Some(BTreeMap::from([(
        "slashing-protection.dvt.io/alpha".to_owned(),
        running[0].as_str().to_owned(),
    )]));
    assert!(
        validate(&dv, &facts).unwrap().members[0]
            .migration
            .is_some()
    );
}

#[test]
fn restart_requests_reach_their_members_and_bad_ones_are_refused() {
    let (mut dv, facts) = example("stader-4.yaml");
    dv.metadata.annotations = Some(BTreeMap::from([
        (
            "restart.dvt.io/bravo".to_owned(),
            "2026-12-01T10:00:00Z".to_owned(),
        ),
        (
            "dvt.io/restart-all".to_owned(),
            "2026-12-01T09:00:00+00:00".to_owned(),
        ),
        ("unrelated.io/x".to_owned(), "y".to_owned()),
    ]));
    let cluster = validate(&dv, &facts).unwrap();
    let requested: Vec<(&str, Option<&str>)> = cluster
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.restart_requested_at.as_deref()))
        .collect();
    assert_eq!(
        requested,
        [
            ("alpha", Some("2026-12-01T09:00:00Z")),
            ("bravo", Some("2026-12-01T10:00:00Z")),
            ("charlie", Some("2026-12-01T09:00:00Z")),
            ("delta", Some("2026-12-01T09:00:00Z")),
        ]
    );

    dv.metadata.annotations = Some(BTreeMap::from([
        (
            "restart.dvt.io/echo".to_owned(),
            "2026-12-01T10:00:00Z".to_owned(),
        ),
        ("dvt.io/restart-all".to_owned(), "now".to_owned()),
    ]));
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), "InvalidRestartRequest");
    assert_eq!(
        invalid.problems,
        [
            "metadata.annotations[dvt.io/restart-all]: \"now\" is not an RFC 3339 time (e.g. 2026-12-01T10:00:00Z)",
            "metadata.annotations[restart.dvt.io/echo]: no member named \"echo\"",
        ]
    );
}

#[test]
fn too_few_zones_block_a_required_dv_and_name_the_fix() {
    let (mut dv, mut facts) = example("stader-4.yaml");
    dv.spec.placement.policy = crate::api::Policy::Required;
    facts.zones = ["zone-a", "zone-b", "zone-c"]
        .into_iter()
        .map(|z| (z.to_owned(), 3))
        .collect();
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), reasons::PLACEMENT_UNSATISFIABLE);
    assert!(
        invalid.message().contains("at most 1 may share a zone"),
        "{}",
        invalid.message()
    );
    assert!(
        invalid.message().contains("add nodes in at least 4 zones"),
        "{}",
        invalid.message()
    );
    let mut preferred = dv.clone();
    preferred.spec.placement.policy = crate::api::Policy::Preferred;
    assert!(validate(&preferred, &facts).is_ok());
}

#[test]
fn a_member_holding_another_members_share_is_held_back_and_named() {
    let (mut dv, mut facts) = example("stader-4.yaml");
    // bravo points at a copy of alpha's keystores.
    let alpha = facts.keystores["stader-4-alpha-keystore"].clone();
    facts.keystores.insert("bravo-copy".into(), alpha);
    facts.secrets.insert(
        "bravo-copy".into(),
        SecretFacts {
            resource_version: "1".into(),
        },
    );
    dv.spec.members[1].key_share_secret.as_mut().unwrap().name = "bravo-copy".into();
    let cluster = validate(&dv, &facts).unwrap();
    assert_eq!(cluster.members.len(), 3);
    let MemberProblem { member, why, .. } = &cluster.share_mismatches[0];
    assert_eq!(member, "bravo");
    assert!(
        why.contains("validator 0: keystore-0.json in Secret \"bravo-copy\"")
            && why.contains("which is share 0 (member alpha), not the lock's share 1"),
        "{why}"
    );
}

#[test]
fn a_lock_whose_shares_do_not_interpolate_is_refused() {
    let (dv, mut facts) = example("stader-4.yaml");
    // Swap the first two shares of validator 0.
    let mut lock = crate::controller::testing::example_lock("stader-4.yaml");
    let shares = lock["distributed_validators"][0]["public_shares"]
        .as_array_mut()
        .unwrap();
    shares.swap(0, 1);
    facts.lock = crate::controller::testing::read_lock(&lock);
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), reasons::LOCK_INVALID);
    assert!(
        invalid
            .message()
            .contains("validator 0: public shares 0..2 do not interpolate"),
        "{}",
        invalid.message()
    );
}

#[test]
fn unpinned_clients_spread_evenly_in_index_order() {
    let (mut dv, _) = example("stader-7.yaml");
    for member in &mut dv.spec.members {
        member.validator_client = None;
    }
    let clients = assign_clients(
        &dv.spec.members,
        &[
            ValidatorClient::Lighthouse,
            ValidatorClient::Teku,
            ValidatorClient::Lodestar,
        ],
    );
    let mut counts: BTreeMap<ValidatorClient, usize> = BTreeMap::new();
    for c in clients.iter().flatten() {
        *counts.entry(*c).or_default() += 1;
    }
    assert_eq!(counts.values().max(), Some(&3));
    assert_eq!(counts.values().min(), Some(&2));
}

#[test]
fn remote_members_need_no_secrets_are_not_built_and_stay_on_the_roster() {
    let (mut dv, mut facts) = example("stader-4.yaml");
    for member in &mut dv.spec.members[2..] {
        member.remote = true;
        member.key_share_secret = None;
        member.enr_secret = None;
    }
    for secret in [
        "stader-4-charlie-keystore",
        "stader-4-charlie-enr",
        "stader-4-delta-keystore",
        "stader-4-delta-enr",
    ] {
        facts.secrets.remove(secret);
    }
    let cluster = validate(&dv, &facts).unwrap();
    let built: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(built, vec!["alpha", "bravo"]);
    assert!(cluster.blocked.is_empty(), "{:?}", cluster.blocked);
    assert_eq!(cluster.quorum.members(), 4);
    let remote: Vec<(&str, Option<ValidatorClient>)> = cluster
        .roster
        .iter()
        .filter(|m| m.remote)
        .map(|m| (m.name.as_str(), m.client))
        .collect();
    assert_eq!(
        remote,
        vec![
            ("charlie", Some(ValidatorClient::Prysm)),
            ("delta", Some(ValidatorClient::Lodestar))
        ]
    );
    // Two members run here, in two different zones: the remote ones take no zone here.
    let zones: std::collections::BTreeSet<_> =
        cluster.members.iter().map(|m| m.zone.clone()).collect();
    assert_eq!(zones.len(), 2, "{zones:?}");
    // A remote member that pins no client gets none assigned (another organisation chooses).
    dv.spec.members[3].validator_client = None;
    let cluster = validate(&dv, &facts).unwrap();
    assert_eq!(cluster.roster[3].client, None);
}

#[test]
fn the_simnet_examples_run_in_test_network_mode_without_beacon_nodes() {
    for file in ["simnet/simnet-4.yaml", "simnet/simnet-7.yaml"] {
        let (dv, facts) = example(file);
        let cluster = validate(&dv, &facts).unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert_eq!(cluster.members.len(), dv.spec.members.len(), "{file}");
        assert!(cluster.blocked.is_empty() && cluster.share_mismatches.is_empty());
        assert!(cluster.beacon_endpoints.is_empty());
        assert_eq!(cluster.test_network.map(|t| t.slot_seconds), Some(2));
    }
}

#[test]
fn a_mainnet_lock_is_refused_in_test_network_mode() {
    let (dv, mut facts) = example("simnet/simnet-4.yaml");
    let mut lock = facts.lock.as_ref().unwrap().as_ref().clone();
    let mut summary = lock.summary.clone().unwrap();
    summary.fork_version = Some("0x00000000".into());
    lock.summary = Ok(summary);
    facts.lock = Ok(std::sync::Arc::new(lock));
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), reasons::LOCK_MISMATCH);
    assert!(
        invalid
            .message()
            .contains("is for mainnet (fork version 0x00000000): test-network mode is refused"),
        "{}",
        invalid.message()
    );
}

#[test]
fn a_mainnet_dv_is_refused_in_test_network_mode() {
    let (mut dv, facts) = example("simnet/simnet-4.yaml");
    dv.spec.network = crate::api::Network::Mainnet;
    let invalid = validate(&dv, &facts).unwrap_err();
    assert_eq!(invalid.reason(), reasons::INVALID_SPEC);
    assert!(
        invalid.message().contains("spec.testNetwork")
            && invalid.message().contains("refused for mainnet"),
        "{}",
        invalid.message()
    );
}
