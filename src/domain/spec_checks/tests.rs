//! Tests of the spec checks, each problem with its field path.

use super::*;
use crate::api::{DistributedValidator, OperatorClass, Policy, ValidatorClient};

fn four() -> DistributedValidatorSpec {
    DistributedValidator::fixture_four("dv").spec
}

fn seven() -> DistributedValidatorSpec {
    DistributedValidator::fixture_seven("dv").spec
}

fn errors(name: &str, spec: &DistributedValidatorSpec) -> Vec<String> {
    validate_spec(name, spec)
        .errors()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}

fn warnings(name: &str, spec: &DistributedValidatorSpec) -> Vec<String> {
    validate_spec(name, spec)
        .warnings()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect()
}

/// Asserts exactly one error, at `path`, whose message contains `needle`.
fn assert_single_error(spec: &DistributedValidatorSpec, path: &str, needle: &str) {
    let errors = errors("dv", spec);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{path}: ")) && errors[0].contains(needle),
        "expected {path}: ...{needle}..., got {errors:#?}"
    );
}

#[test]
fn seed_shapes_are_valid_without_warnings() {
    assert_eq!(validate_spec("dv", &four()).problems, vec![]);
    assert_eq!(validate_spec("dv", &seven()).problems, vec![]);
}

#[test]
fn duplicate_member_name() {
    let mut spec = four();
    spec.members[2].name = "m0".into();
    assert_single_error(
        &spec,
        "spec.members[2].name",
        "duplicate member name \"m0\" (also spec.members[0])",
    );
}

#[test]
fn invalid_member_name() {
    let mut spec = four();
    spec.members[1].name = "Member_1".into();
    assert_single_error(
        &spec,
        "spec.members[1].name",
        "lowercase letters, digits and '-'",
    );
}

#[test]
fn duplicate_share_index() {
    let mut spec = four();
    spec.members[2].index = 1;
    // Index 2 is then unused, which needs no separate error: n distinct indexes below n cover all.
    assert_single_error(
        &spec,
        "spec.members[2].index",
        "duplicate share index 1 (also spec.members[1])",
    );
}

#[test]
fn share_index_out_of_range() {
    let mut spec = four();
    spec.members[3].index = 4;
    assert_single_error(
        &spec,
        "spec.members[3].index",
        "share index 4 is out of range: 4 members use indexes 0 to 3",
    );
}

#[test]
fn threshold_two_of_four_is_rejected() {
    let mut spec = four();
    spec.threshold = Some(2);
    // A threshold that low also lets single operators and classes reach it.
    let errors = errors("dv", &spec);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.threshold: threshold 2 of 4 is not more than half")),
        "{errors:#?}"
    );
}

#[test]
fn threshold_five_of_four_is_rejected() {
    let mut spec = four();
    spec.threshold = Some(5);
    assert_single_error(
        &spec,
        "spec.threshold",
        "threshold 5 of 4 is more than the members",
    );
}

#[test]
fn explicit_default_threshold_is_valid() {
    let mut spec = four();
    spec.threshold = Some(3);
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    spec.threshold = Some(4);
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
}

#[test]
fn weak_threshold_warns() {
    let mut spec = seven();
    spec.threshold = Some(4);
    // 4 of 7 with 3 permissioned + 4 permissionless lets the permissionless class reach t.
    spec.operator_diversity.policy = Policy::Preferred;
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    let warnings = warnings("dv", &spec);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("below the Byzantine-safe default 5")),
        "{warnings:#?}"
    );
}

#[test]
fn too_few_and_too_many_members() {
    let mut spec = four();
    spec.members.truncate(2);
    let errors = errors("dv", &spec);
    assert!(
        errors.iter().any(
            |e| e.starts_with("spec.members: 2 members is outside the supported range 3 to 32")
        ),
        "{errors:#?}"
    );
    let three = DistributedValidator::fixture(
        "dv",
        &[
            OperatorClass::Permissioned,
            OperatorClass::Permissionless,
            OperatorClass::Permissionless,
        ],
    );
    // 2 of 3 lets the permissionless class reach t; allow it to isolate the size warning.
    let mut spec = three.spec;
    spec.operator_diversity.policy = Policy::Preferred;
    assert!(
        warnings("dv", &spec)
            .iter()
            .any(|w| w.contains("tolerate no Byzantine fault")),
        "{:#?}",
        warnings("dv", &spec)
    );
}

#[test]
fn three_of_four_in_one_operator_class_is_rejected() {
    let spec = DistributedValidator::fixture(
        "dv",
        &[
            OperatorClass::Permissioned,
            OperatorClass::Permissioned,
            OperatorClass::Permissioned,
            OperatorClass::Permissionless,
        ],
    )
    .spec;
    assert_single_error(
        &spec,
        "spec.members.operator.class",
        "3 of 4 members are permissioned (permissioned=3, permissionless=1); with threshold 3 one class could sign alone",
    );
}

#[test]
fn one_operator_running_threshold_members_is_rejected_unless_preferred() {
    let mut spec = four();
    for member in &mut spec.members[..3] {
        member.operator.name = "acme".into();
    }
    let errors = errors("dv", &spec);
    assert!(
        errors
            .iter()
            .any(|e| e
                .starts_with("spec.members.operator.name: operator \"acme\" runs 3 of 4 members")),
        "{errors:#?}"
    );
    spec.operator_diversity.policy = Policy::Preferred;
    for member in &mut spec.members {
        member.operator.name = "acme".into();
        member.operator.class = OperatorClass::Permissioned;
    }
    assert_eq!(super::tests::errors("dv", &spec), Vec::<String>::new());
    assert!(!warnings("dv", &spec).is_empty());
}

#[test]
fn two_members_of_one_operator_in_four_warns_about_liveness() {
    let mut spec = four();
    spec.members[1].operator.name = "operator-0".into();
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    let warnings = warnings("dv", &spec);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("its outage alone would stop signing")),
        "{warnings:#?}"
    );
}

#[test]
fn member_name_too_long_for_a_pod_hostname() {
    let mut spec = four();
    spec.members[0].name = "a".repeat(50);
    let name = "validator";
    let errors = errors(name, &spec);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("spec.members[0].name: "),
        "{errors:#?}"
    );
    assert!(errors[0].contains("is 60 characters"), "{errors:#?}");
    assert!(errors[0].contains("63-character limit"), "{errors:#?}");
    // 42 + 1 + 9 = 52 characters still fits.
    spec.members[0].name = "a".repeat(42);
    assert_eq!(super::tests::errors(name, &spec), Vec::<String>::new());
}

#[test]
fn dv_name_must_start_with_a_letter() {
    let errors = errors("4dv", &four());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("metadata.name: "), "{errors:#?}");
}

#[test]
fn shared_secrets_are_rejected() {
    let mut spec = four();
    spec.members[1].enr_secret.as_mut().unwrap().name = spec.members[0]
        .key_share_secret
        .as_ref()
        .unwrap()
        .name
        .clone();
    assert_single_error(
        &spec,
        "spec.members[1].enrSecret.name",
        "is already spec.members[0].keyShareSecret.name",
    );
    // One member may keep both of its own files in one Secret.
    let mut spec = four();
    spec.members[0].enr_secret.as_mut().unwrap().name = spec.members[0]
        .key_share_secret
        .as_ref()
        .unwrap()
        .name
        .clone();
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
}

#[test]
fn lock_must_not_live_in_a_member_secret() {
    let mut spec = four();
    spec.cluster_lock.config_map = None;
    spec.cluster_lock.secret = Some(crate::api::LockKeyRef {
        name: spec.members[2]
            .key_share_secret
            .as_ref()
            .unwrap()
            .name
            .clone(),
        key: "cluster-lock.json".into(),
    });
    assert_single_error(
        &spec,
        "spec.clusterLock.secret.name",
        "keep the lock out of member Secrets",
    );
}

#[test]
fn lock_source_needs_exactly_one() {
    let mut spec = four();
    spec.cluster_lock.config_map = None;
    assert_single_error(
        &spec,
        "spec.clusterLock",
        "set exactly one of configMap or secret",
    );
}

#[test]
fn ssv_is_reserved() {
    let mut spec = four();
    spec.middleware = crate::api::Middleware::Ssv;
    assert_single_error(&spec, "spec.middleware", "only charon is supported");
}

#[test]
fn beacon_endpoints_must_be_urls() {
    let mut spec = four();
    spec.beacon_nodes
        .as_mut()
        .unwrap()
        .endpoints
        .push("beacon:5052".into());
    assert_single_error(
        &spec,
        "spec.beaconNodes.endpoints[1]",
        "is not an http:// or https:// URL",
    );
    let mut spec = four();
    spec.beacon_nodes = None;
    assert_single_error(
        &spec,
        "spec.beaconNodes.endpoints",
        "at least one beacon node",
    );
}

#[test]
fn storage_sizes_must_be_quantities() {
    let mut spec = four();
    spec.storage.validator_client_size = "5 gigs".into();
    assert_single_error(
        &spec,
        "spec.storage.validatorClientSize",
        "is not a storage quantity",
    );
    for good in ["5Gi", "500M", "1.5Gi", "1024"] {
        spec.storage.validator_client_size = good.into();
        assert_eq!(errors("dv", &spec), Vec::<String>::new(), "{good}");
    }
}

#[test]
fn rollout_bounds() {
    let mut spec = four();
    spec.rollout.max_unavailable = 0;
    assert_single_error(&spec, "spec.rollout.maxUnavailable", "must be at least 1");
    let mut spec = four();
    spec.rollout.max_restart_backoff_seconds = 10;
    spec.rollout.restart_backoff_seconds = 20;
    assert_single_error(
        &spec,
        "spec.rollout.maxRestartBackoffSeconds",
        "below restartBackoffSeconds 20",
    );
    let mut spec = seven();
    spec.rollout.max_unavailable = 3;
    assert!(
        warnings("dv", &spec)
            .iter()
            .any(|w| w.contains("above the quorum budget 2"))
    );
}

#[test]
fn pinned_client_must_be_allowed() {
    let mut spec = four();
    spec.client_diversity.clients = vec![
        ValidatorClient::Lighthouse,
        ValidatorClient::Teku,
        ValidatorClient::Prysm,
    ];
    // The fixture pins member 3 to nimbus.
    assert_single_error(
        &spec,
        "spec.members[3].validatorClient",
        "nimbus is not in spec.clientDiversity.clients (lighthouse, teku, prysm)",
    );
}

#[test]
fn one_client_on_threshold_members_is_unsafe() {
    let mut spec = four();
    for member in &mut spec.members[..3] {
        member.validator_client = Some(ValidatorClient::Teku);
    }
    assert_single_error(
        &spec,
        "spec.clientDiversity",
        "3 of 4 members would run teku (teku=3, nimbus=1)",
    );
    spec.client_diversity.policy = Policy::Preferred;
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    assert!(
        warnings("dv", &spec)
            .iter()
            .any(|w| w.contains("could sign something slashable"))
    );
}

#[test]
fn unpinned_clients_are_feasible_only_with_enough_allowed_clients() {
    let mut spec = four();
    for member in &mut spec.members {
        member.validator_client = None;
    }
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    spec.client_diversity.clients = vec![ValidatorClient::Lodestar];
    assert_single_error(
        &spec,
        "spec.clientDiversity",
        "4 of 4 members would run lodestar",
    );
    // Two clients for four members put two on each: safe, but one client bug stops signing.
    spec.client_diversity.clients = vec![ValidatorClient::Lodestar, ValidatorClient::Teku];
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    assert!(
        warnings("dv", &spec)
            .iter()
            .any(|w| w.contains("could stop signing"))
    );
}

#[test]
fn pinned_zones_are_bounded_by_the_liveness_budget() {
    let mut spec = seven();
    for member in &mut spec.members[..3] {
        member.zone = Some("zone-a".into());
    }
    // Zones default to Preferred: the DV runs with a warning.
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    assert!(
        warnings("dv", &spec)
            .iter()
            .any(|w| w.contains("3 members are pinned to zone zone-a"))
    );
    spec.placement.policy = Policy::Required;
    assert_single_error(&spec, "spec.placement", "at most 2 may share a zone");
    spec.members[2].zone = Some("zone-b".into());
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
}

#[test]
fn pinned_zone_must_be_allowed() {
    let mut spec = four();
    spec.placement.zones = vec!["a".into(), "b".into(), "c".into(), "d".into()];
    spec.members[0].zone = Some("e".into());
    assert_single_error(
        &spec,
        "spec.members[0].zone",
        "zone \"e\" is not in spec.placement.zones (a, b, c, d)",
    );
}

#[test]
fn allowed_zones_must_have_room_for_every_member() {
    let mut spec = four();
    spec.placement.policy = Policy::Required;
    spec.placement.zones = vec!["a".into(), "b".into(), "c".into()];
    assert_single_error(&spec, "spec.placement.zones", "list at least 4 zones");
    spec.placement.zones.push("d".into());
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
}

#[test]
fn report_is_sorted_errors_first() {
    let mut spec = four();
    spec.members[3].index = 0;
    spec.members[2].name = "m0".into();
    spec.storage.retain_on_delete = false;
    let report = validate_spec("dv", &spec);
    let severities: Vec<Severity> = report.problems.iter().map(|p| p.severity).collect();
    let mut sorted = severities.clone();
    sorted.sort();
    assert_eq!(severities, sorted);
    assert_eq!(report.errors().count(), 2);
    assert_eq!(report.warnings().count(), 1);
}

#[test]
fn a_remote_member_names_no_secret_and_a_local_one_names_both() {
    let mut spec = four();
    spec.members[2].remote = true;
    spec.members[2].key_share_secret = None;
    spec.members[2].enr_secret = None;
    assert_eq!(errors("dv", &spec), Vec::<String>::new());
    spec.members[3].remote = true;
    assert_eq!(
        errors("dv", &spec),
        vec![
            "spec.members[3].enrSecret: a remote member's keys are with the organisation that runs it: name no Secret for it here",
            "spec.members[3].keyShareSecret: a remote member's keys are with the organisation that runs it: name no Secret for it here",
        ]
    );
    spec.members[3].remote = false;
    spec.members[3].enr_secret = None;
    assert_single_error(
        &spec,
        "spec.members[3].enrSecret",
        "required for a member run in this cluster",
    );
}

#[test]
fn every_member_remote_is_refused() {
    let mut spec = four();
    for member in &mut spec.members {
        member.remote = true;
        member.key_share_secret = None;
        member.enr_secret = None;
    }
    assert_eq!(
        errors("dv", &spec),
        vec!["spec.members: every member is remote: at least one member must run in this cluster"]
    );
}

#[test]
fn a_node_port_exposure_needs_a_unique_port_and_an_address_per_local_member() {
    let mut spec = four();
    spec.p2p = Some(crate::api::P2pExposure {
        service_type: crate::api::ExposureType::NodePort,
        source_ranges: vec!["203.0.113.0/24".into(), "not-a-cidr".into()],
    });
    for (i, member) in spec.members.iter_mut().enumerate() {
        member.node_port = Some(30610 + i as u16);
        member.external_address = Some(format!("node-{i}.example.org"));
    }
    spec.members[1].node_port = Some(30610);
    spec.members[2].external_address = None;
    assert_eq!(
        errors("dv", &spec),
        vec![
            "spec.members[1].nodePort: node port 30610 is also spec.members[0].nodePort",
            "spec.members[2].externalAddress: required with spec.p2p.type: NodePort: the node address peers dial",
            "spec.p2p.sourceRanges[1]: \"not-a-cidr\" is not a CIDR (e.g. 203.0.113.0/24)",
        ]
    );
    spec.p2p = None;
    spec.members[2].external_address = Some("x.example.org".into());
    spec.members[1].node_port = None;
    spec.members[2].node_port = None;
    spec.members[3].node_port = None;
    assert_single_error(
        &spec,
        "spec.members[0].nodePort",
        "only with spec.p2p.type: NodePort",
    );
}
