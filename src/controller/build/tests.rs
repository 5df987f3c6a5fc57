//! Tests of the children built for the examples (snapshots) and their invariants.

use std::collections::BTreeSet;

use super::*;
use crate::api::ValidatorClient;
use crate::controller::names::CONTAINER_CHARON;
use crate::controller::names::CONTAINER_VALIDATOR_CLIENT;
use crate::controller::names::CONTROLLER_NAME;
use crate::controller::names::PORT_MONITORING;
use crate::controller::names::PORT_P2P;
use crate::controller::names::PORT_VALIDATOR_API;
use crate::controller::names::PORT_VC_METRICS;
use crate::controller::names::VOLUME_CHARON_DATA;
use crate::controller::names::VOLUME_KEY_SHARE;
use crate::controller::names::VOLUME_TMP;
use crate::controller::names::VOLUME_VC_DATA;
use crate::controller::testing::example;
use crate::controller::validate::validate;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const SNAPSHOTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/controller/build/snapshots"
);

/// Compares `objects` with the committed snapshot `name`; `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, desired: &Desired) {
    let Desired {
        services,
        statefulsets,
        pdb,
        network_policy,
    } = desired;
    let mut text = String::new();
    let documents = services
        .iter()
        .map(serde_yaml::to_string)
        .chain(statefulsets.iter().map(serde_yaml::to_string))
        .chain([serde_yaml::to_string(pdb)])
        .chain(network_policy.iter().map(serde_yaml::to_string));
    for document in documents {
        text.push_str("---\n");
        text.push_str(&document.expect("objects serialise"));
    }
    let path = format!("{SNAPSHOTS}/{name}.yaml");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(SNAPSHOTS).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run with UPDATE_SNAPSHOTS=1 to create it"));
    assert!(
        committed == text,
        "{path} differs from what the builders make; review and run with UPDATE_SNAPSHOTS=1"
    );
}

/// The Charon container of a member's pod template.
fn charon_of(set: &StatefulSet) -> &Container {
    let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers
        .iter()
        .find(|c| c.name == CONTAINER_CHARON)
        .unwrap()
}

fn desired(file: &str) -> (crate::controller::model::Cluster, Desired) {
    let (dv, facts) = example(file);
    let cluster = validate(&dv, &facts).expect("examples are valid");
    let desired = build(&cluster);
    (cluster, desired)
}

/// Prysm's image holds its binary at the file `/validator`: a mount below it fails at container
/// start (runc: "not a directory"), so no container in Prysm's image mounts anything there.
#[test]
fn no_container_in_prysms_image_mounts_below_its_binary() {
    let (mut dv, facts) = example("stader-4.yaml");
    for member in &mut dv.spec.members {
        member.validator_client = Some(ValidatorClient::Prysm);
    }
    dv.spec.client_diversity.policy = crate::api::Policy::Preferred;
    let cluster = validate(&dv, &facts).expect("valid");
    let desired = build(&cluster);
    let mut checked = 0;
    for set in &desired.statefulsets {
        let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let containers = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for container in
            containers.filter(|c| c.image.as_deref().is_some_and(|i| i.contains("prysm")))
        {
            checked += 1;
            for mount in container.volume_mounts.iter().flatten() {
                assert!(
                    !mount.mount_path.starts_with("/validator/"),
                    "{}: {} at {}",
                    container.name,
                    mount.name,
                    mount.mount_path
                );
            }
        }
    }
    assert!(checked >= 8, "{checked} Prysm containers");
}

/// In test-network mode Charon's validator mock signs with the member's own key shares: Charon
/// mounts them, read-only; otherwise only the validator client does.
#[test]
fn only_a_test_network_members_charon_mounts_its_key_shares_read_only() {
    for (file, test_network) in [("stader-4.yaml", false), ("simnet/simnet-4.yaml", true)] {
        let (_, desired) = desired(file);
        for set in &desired.statefulsets {
            let shares: Vec<_> = charon_of(set)
                .volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.name == VOLUME_KEY_SHARE)
                .collect();
            assert_eq!(shares.len(), usize::from(test_network), "{file}");
            assert!(shares.iter().all(|m| m.read_only == Some(true)));
        }
    }
}

#[test]
fn snapshots_of_both_examples() {
    for file in ["stader-4", "stader-7"] {
        snapshot(file, &desired(&format!("{file}.yaml")).1);
    }
}

#[test]
fn snapshots_of_each_client() {
    for client in ValidatorClient::ALL {
        let (mut dv, facts) = example("stader-4.yaml");
        for member in &mut dv.spec.members {
            member.validator_client = Some(client);
        }
        // Four members on one client breaks the diversity rule; this test is about the
        // client's objects, so make the rule advisory.
        dv.spec.client_diversity.policy = crate::api::Policy::Preferred;
        dv.spec.members.truncate(4);
        let cluster = validate(&dv, &facts).expect("valid");
        let mut objects = build(&cluster);
        objects.services.truncate(1);
        objects.statefulsets.truncate(1);
        snapshot(&format!("client-{client}"), &objects);
    }
}

fn pod_secrets(set: &StatefulSet) -> BTreeSet<String> {
    set.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect()
}

#[test]
fn each_member_pod_mounts_its_own_secrets_and_no_other_members() {
    for file in [
        "stader-4.yaml",
        "stader-7.yaml",
        "simnet/simnet-4.yaml",
        "simnet/simnet-7.yaml",
    ] {
        let (dv, _) = example(file);
        let (_, desired) = desired(file);
        assert_eq!(desired.statefulsets.len(), dv.spec.members.len());
        for (set, member) in desired.statefulsets.iter().zip(&dv.spec.members) {
            let own: BTreeSet<String> = [
                member.key_share_secret.as_ref().unwrap().name.clone(),
                member.enr_secret.as_ref().unwrap().name.clone(),
            ]
            .into();
            assert_eq!(pod_secrets(set), own, "{file}: {}", member.name);
            for other in dv.spec.members.iter().filter(|o| o.name != member.name) {
                let mounted = pod_secrets(set);
                assert!(
                    !mounted.contains(&other.key_share_secret.as_ref().unwrap().name)
                        && !mounted.contains(&other.enr_secret.as_ref().unwrap().name)
                );
            }
        }
    }
}

#[test]
fn the_budget_is_an_integer_min_available_of_the_threshold_over_all_members() {
    for (file, threshold) in [("stader-4.yaml", 3), ("stader-7.yaml", 5)] {
        let (_, desired) = desired(file);
        let spec = desired.pdb.spec.unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(threshold)));
        assert!(spec.max_unavailable.is_none());
        let selector = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(
            selector.len(),
            1,
            "all members of the DV, whatever the member"
        );
    }
}

#[test]
fn pods_meet_the_restricted_pod_security_standard_and_keep_data_on_volumes() {
    let (_, desired) = desired("stader-4.yaml");
    for set in &desired.statefulsets {
        let spec = set.spec.as_ref().unwrap();
        assert_eq!(
            spec.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .unwrap();
        assert_eq!(
            (
                retention.when_deleted.as_deref(),
                retention.when_scaled.as_deref()
            ),
            (Some("Retain"), Some("Retain"))
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        for container in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let sc = container.security_context.as_ref().unwrap();
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{}",
                container.name
            );
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_owned()][..])
            );
            assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        }
        // No emptyDir for anything but /tmp: keys and slashing protection live on PVCs.
        let empty_dirs: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.empty_dir.is_some())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(empty_dirs, [VOLUME_TMP]);
        let claims: Vec<String> = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(claims, [VOLUME_CHARON_DATA, VOLUME_VC_DATA]);
    }
}

#[test]
fn charon_advertises_the_members_stable_dns_name_and_talks_to_the_local_client() {
    let (_, desired) = desired("stader-4.yaml");
    let set = &desired.statefulsets[0];
    let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let charon = charon_of(set);
    let args = charon.args.as_ref().unwrap();
    assert!(
        args.contains(
            &"--p2p-external-hostname=stader-4-alpha-0.stader-4-alpha.default.svc".to_owned()
        ),
        "{args:?}"
    );
    assert!(args.contains(&"--validator-api-address=127.0.0.1:3600".to_owned()));
    assert!(args.contains(
        &"--fallback-beacon-node-endpoints=http://beacon-fallback.ethereum.svc:5052".to_owned()
    ));
    assert_eq!(
        charon
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/livez")
    );
    assert_eq!(
        charon
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    let client = pod
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_VALIDATOR_CLIENT)
        .unwrap();
    assert!(
        client
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a.contains("http://127.0.0.1:3600"))
    );
    assert!(
        !client
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a.contains("init-slashing-protection"))
    );
}

#[test]
fn building_twice_gives_the_same_hashes_and_a_changed_image_changes_them() {
    let (dv, facts) = example("stader-4.yaml");
    let a = build(&validate(&dv, &facts).unwrap());
    let b = build(&validate(&dv, &facts).unwrap());
    assert_eq!(a, b);
    let mut changed = dv.clone();
    changed.spec.charon.image = Some("obolnetwork/charon:v1.8.0".into());
    let c = build(&validate(&changed, &facts).unwrap());
    let hash =
        |s: &StatefulSet| s.metadata.annotations.as_ref().unwrap()[ANNOTATION_SPEC_HASH].clone();
    assert_ne!(hash(&a.statefulsets[0]), hash(&c.statefulsets[0]));
    assert_eq!(a.pdb, c.pdb);
}

/// The stamp hashes the encoded object as it is encoded; the hash must stay the one of its
/// text (the hashes on live objects were made so, and a changed hash re-applies every child),
/// and FNV-1a must stay FNV-1a (the published test vector for "a", plus the part's zero byte).
#[test]
fn a_stamp_is_the_hash_of_the_objects_text() {
    use crate::controller::model::{stable_hash, stable_hash_of};
    assert_eq!(stable_hash(&[]), "cbf29ce484222325");
    assert_eq!(stable_hash(&["a"]), {
        // FNV-1a of "a", then the zero byte after the part: xor with 0 leaves it, the multiply
        // remains.
        let fnv_of_a: u64 = 0xaf63_dc4c_8601_ec8c;
        format!("{:016x}", fnv_of_a.wrapping_mul(0x0100_0000_01b3))
    });
    let (dv, facts) = example("stader-4.yaml");
    let desired = build(&validate(&dv, &facts).unwrap());
    let mut set = desired.statefulsets[0].clone();
    let stamped = set
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove(ANNOTATION_SPEC_HASH)
        .unwrap();
    // Stamped as built: with the annotations it had then (none but the hash's, if so).
    if set
        .metadata
        .annotations
        .as_ref()
        .is_some_and(BTreeMap::is_empty)
    {
        set.metadata.annotations = None;
    }
    let text = serde_json::to_string(&set).unwrap();
    assert!(text.len() > 4_000, "a whole member StatefulSet");
    assert_eq!(stamped, stable_hash(&[&text]));
    assert_eq!(stable_hash_of(&set).unwrap(), stamped);
}

/// The apply sends each child as its typed encoding (`apply_one`): server-side apply refuses a
/// body without apiVersion and kind, so every kind built must encode both.
#[test]
fn every_child_encodes_its_api_version_and_kind() {
    fn typed<K: k8s_openapi::Resource + serde::Serialize>(object: &K) {
        let value = serde_json::to_value(object).unwrap();
        assert_eq!(value["apiVersion"], K::API_VERSION, "{}", K::KIND);
        assert_eq!(value["kind"], K::KIND);
    }
    let (dv, facts) = example("stader-4.yaml");
    let desired = build(&validate(&dv, &facts).unwrap());
    desired.services.iter().for_each(typed);
    desired.statefulsets.iter().for_each(typed);
    typed(&desired.pdb);
    typed(desired.network_policy.as_ref().unwrap());
}

#[test]
fn the_network_policy_admits_p2p_from_the_same_dv_and_metrics_from_listed_namespaces() {
    let (mut dv, facts) = example("stader-4.yaml");
    dv.spec.network_policy.relay_cidrs = vec!["203.0.113.0/24".into()];
    dv.spec.network_policy.metrics_namespaces = vec!["monitoring".into()];
    let policy = build(&validate(&dv, &facts).unwrap())
        .network_policy
        .unwrap();
    let spec = policy.spec.unwrap();
    let rules = spec.ingress.unwrap();
    // p2p, metrics, and the operator's reads of Charon's monitoring port.
    assert_eq!(rules.len(), 3);
    let operator = &rules[2];
    assert_eq!(
        operator.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(PORT_MONITORING))
    );
    assert_eq!(
        operator.from.as_ref().unwrap()[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[LABEL_NAME],
        CONTROLLER_NAME
    );
    let p2p = &rules[0];
    assert_eq!(
        p2p.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(PORT_P2P))
    );
    let from = p2p.from.as_ref().unwrap();
    assert_eq!(
        from[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[LABEL_DV],
        "stader-4"
    );
    assert_eq!(from[1].ip_block.as_ref().unwrap().cidr, "203.0.113.0/24");
    let metrics = &rules[1];
    let ports: Vec<_> = metrics
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.port.clone())
        .collect();
    assert_eq!(
        ports,
        [
            Some(IntOrString::Int(PORT_MONITORING)),
            Some(IntOrString::Int(PORT_VC_METRICS))
        ]
    );
    // No rule admits the validator API.
    assert!(
        rules
            .iter()
            .flat_map(|r| r.ports.iter().flatten())
            .all(|p| p.port != Some(IntOrString::Int(PORT_VALIDATOR_API)))
    );
    // Opting out builds none.
    dv.spec.network_policy.enabled = false;
    assert!(
        build(&validate(&dv, &facts).unwrap())
            .network_policy
            .is_none()
    );
}

#[test]
fn a_node_port_member_listens_and_is_published_on_its_node_port_and_advertises_its_address() {
    let (mut dv, facts) = example("stader-4.yaml");
    dv.spec.p2p = Some(crate::api::P2pExposure {
        service_type: crate::api::ExposureType::NodePort,
        source_ranges: vec!["203.0.113.0/24".into()],
    });
    for (i, member) in dv.spec.members.iter_mut().enumerate() {
        member.node_port = Some(30610 + i as u16);
        member.external_address = Some(format!("node-{i}.example.org"));
    }
    dv.spec.members[1].external_address = Some("198.51.100.7".into());
    let desired = build(&validate(&dv, &facts).unwrap());
    let charon_args = |set: &StatefulSet| -> Vec<String> {
        set.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .args
            .clone()
            .unwrap_or_default()
    };
    let alpha = charon_args(&desired.statefulsets[0]);
    assert!(
        alpha.contains(&"--p2p-tcp-address=0.0.0.0:30610".to_owned()),
        "{alpha:?}"
    );
    assert!(alpha.contains(&"--p2p-external-hostname=node-0.example.org".to_owned()));
    let bravo = charon_args(&desired.statefulsets[1]);
    assert!(
        bravo.contains(&"--p2p-external-ip=198.51.100.7".to_owned()),
        "{bravo:?}"
    );
    let published: Vec<(String, String, Option<i32>)> = desired
        .services
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            let port = spec.ports.as_ref()?.first()?;
            Some((
                s.metadata.name.clone()?,
                spec.type_.clone()?,
                port.node_port,
            ))
        })
        .collect();
    assert_eq!(
        published,
        vec![
            ("stader-4-alpha-p2p".into(), "NodePort".into(), Some(30610)),
            ("stader-4-bravo-p2p".into(), "NodePort".into(), Some(30611)),
            (
                "stader-4-charlie-p2p".into(),
                "NodePort".into(),
                Some(30612)
            ),
            ("stader-4-delta-p2p".into(), "NodePort".into(), Some(30613)),
        ]
    );
    let policy = serde_json::to_value(desired.network_policy.unwrap()).unwrap();
    let from_outside = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["from"][0]["ipBlock"]["cidr"] == "203.0.113.0/24")
        .expect("a rule for peers outside");
    assert_eq!(from_outside["from"][0]["ipBlock"]["cidr"], "203.0.113.0/24");
    assert_eq!(
        from_outside["ports"].as_array().unwrap().len(),
        4,
        "each member's port"
    );
}

#[test]
fn the_budget_over_local_pods_counts_the_remote_members_up() {
    let (mut dv, mut facts) = example("stader-4.yaml");
    for member in &mut dv.spec.members[2..] {
        member.remote = true;
        member.key_share_secret = None;
        member.enr_secret = None;
    }
    let min_available = |facts: &crate::controller::model::Facts| {
        build(&validate(&dv, facts).unwrap())
            .pdb
            .spec
            .unwrap()
            .min_available
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(
        min_available(&facts),
        Some(IntOrString::Int(3)),
        "nothing seen: t"
    );
    facts.peers.up = [2].into();
    assert_eq!(min_available(&facts), Some(IntOrString::Int(2)));
    facts.peers.up = [0, 1, 2, 3].into();
    assert_eq!(min_available(&facts), Some(IntOrString::Int(1)));
}

/// The fields `inputs_fingerprint` leaves out are not read by the builders: changing each one
/// builds the same children and keeps the fingerprint. Were a builder to start reading one of
/// them without the fingerprint taking it in, a skipped build would leave children stale.
#[test]
fn what_the_fingerprint_leaves_out_changes_nothing_built() {
    use crate::controller::model::{ClientChangeHeld, MemberProblem, ProblemKind, RosterEntry};
    use crate::domain::client_moves::HoldReason;
    use crate::domain::peers::NotReady;
    type Change = fn(&mut crate::controller::model::Cluster);
    let changes: [(&str, Change); 8] = [
        ("zones", |c| {
            c.zones.insert("zone-z".into(), 9);
        }),
        ("blocked", |c| {
            c.blocked.push(MemberProblem {
                member: "echo".into(),
                kind: ProblemKind::SecretsMissing(vec!["echo-keys".into()]),
                why: "missing".into(),
            });
        }),
        ("share_mismatches", |c| {
            c.share_mismatches.push(MemberProblem {
                member: "echo".into(),
                kind: ProblemKind::ShareMismatch,
                why: "another share".into(),
            });
        }),
        ("storage_growth", |c| {
            c.storage_growth
                .insert("alpha".into(), vec![("data".into(), "2Gi".into())]);
        }),
        ("client_changes_held", |c| {
            c.client_changes_held.push(ClientChangeHeld {
                member: "alpha".into(),
                running: ValidatorClient::Teku,
                wanted: ValidatorClient::Nimbus,
                why: HoldReason::AnotherMoves("bravo".into()),
            });
        }),
        ("roster", |c| {
            c.roster.push(RosterEntry {
                name: "echo".into(),
                index: 9,
                operator_name: "elsewhere".into(),
                operator_class: crate::api::OperatorClass::Permissionless,
                client: None,
                remote: true,
            });
        }),
        ("peers", |c| {
            c.peers.up.insert(0);
            c.peers.observed = true;
            c.peers
                .last_seen
                .insert(0, k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
            c.peers.not_ready.insert(1, NotReady::BeaconNodeSyncing);
        }),
        ("remote_up", |c| c.remote_up += 2),
    ];
    for file in ["stader-4.yaml", "stader-7.yaml"] {
        let (cluster, built) = desired(file);
        for (field, change) in changes {
            let mut changed = cluster.clone();
            change(&mut changed);
            assert_ne!(changed, cluster, "{field}: the change changes the cluster");
            assert_eq!(
                build(&changed),
                built,
                "{file}: {field} changes what is built"
            );
            assert_eq!(
                inputs_fingerprint(&changed),
                inputs_fingerprint(&cluster),
                "{file}: {field}"
            );
        }
    }
}

/// Whatever the builders read changes the fingerprint, down to one member's image or the
/// threshold the budget keeps.
#[test]
fn what_the_builders_read_changes_the_fingerprint() {
    type Change = fn(&mut crate::controller::model::Cluster);
    let changes: [(&str, Change); 10] = [
        ("uid", |c| c.uid.push('x')),
        ("a member's client image", |c| {
            c.members[2].client_image.push_str("-rc1");
        }),
        ("a member's inputs hash", |c| {
            c.members[0].inputs_hash.push('0')
        }),
        ("a restart request", |c| {
            c.members[1].restart_requested_at = Some("2026-12-05T10:00:00Z".into());
        }),
        ("the rollout threshold", |c| c.rollout.threshold -= 1),
        ("relays", |c| c.relays.push("https://relay.example".into())),
        ("the network policy", |c| {
            c.network_policy.enabled = !c.network_policy.enabled;
        }),
        ("charon's environment", |c| {
            c.charon_extra_env.push(("A".into(), "b".into()));
        }),
        ("the log level", |c| {
            c.log_level = if c.log_level == crate::api::LogLevel::Debug {
                crate::api::LogLevel::Info
            } else {
                crate::api::LogLevel::Debug
            };
        }),
        ("the lock's public keys", |c| {
            c.lock_summary.public_keys[0].public_shares.swap(0, 1);
        }),
    ];
    let (cluster, built) = desired("stader-4.yaml");
    let fingerprint = inputs_fingerprint(&cluster);
    assert_eq!(inputs_fingerprint(&cluster.clone()), fingerprint);
    for (what, change) in changes {
        let mut changed = cluster.clone();
        change(&mut changed);
        assert_ne!(inputs_fingerprint(&changed), fingerprint, "{what}");
        // And each of them is a change of what is built, or the fingerprint would take in more
        // than it needs (a skipped build missed for nothing).
        assert_ne!(build(&changed), built, "{what}");
    }
}

#[test]
fn the_children_list_names_and_hashes_in_the_order_applied() {
    let (_, built) = desired("stader-4.yaml");
    let children = built.children();
    let kinds: Vec<ChildKind> = children.iter().map(|c| c.kind).collect();
    let mut expected = vec![ChildKind::Service; built.services.len()];
    expected.push(ChildKind::PodDisruptionBudget);
    expected.extend(
        built
            .network_policy
            .iter()
            .map(|_| ChildKind::NetworkPolicy),
    );
    expected.extend(vec![ChildKind::StatefulSet; built.statefulsets.len()]);
    assert_eq!(kinds, expected);
    let set = built.statefulsets.last().unwrap();
    let last = children.last().unwrap();
    assert_eq!(Some(&last.name), set.metadata.name.as_ref());
    assert_eq!(
        Some(&last.hash),
        set.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(ANNOTATION_SPEC_HASH)
    );
    assert!(children.iter().all(|c| c.hash.len() == 16), "{children:?}");
}

/// `beaconNodes.headersSecret` reaches Charon as `CHARON_BEACON_NODE_HEADERS` from the Secret by
/// reference: no value in the StatefulSet.
#[test]
fn beacon_node_headers_reach_charon_from_their_secret_by_reference() {
    let (mut dv, facts) = example("stader-4.yaml");
    dv.spec.beacon_nodes.as_mut().unwrap().headers_secret = Some(crate::api::SecretKeyRef {
        name: "beacon-token".into(),
        key: "headers".into(),
    });
    let desired = build(&validate(&dv, &facts).expect("valid"));
    for set in &desired.statefulsets {
        let env = charon_of(set).env.as_ref().expect("env");
        let headers = env
            .iter()
            .find(|e| e.name == "CHARON_BEACON_NODE_HEADERS")
            .expect("the headers variable");
        assert_eq!(headers.value, None);
        let reference = headers
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("a Secret reference");
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("beacon-token", "headers")
        );
    }
    let (_, plain) = self::desired("stader-4.yaml");
    assert!(charon_of(&plain.statefulsets[0]).env.is_none());
}
