//! The validate step: from a DistributedValidator and the facts read about it (its lock, which
//! Secrets exist, their keystores' public keys) to a [`Cluster`] the builders work from, or the
//! [`Invalid`] problems that stop it. Pure.

use std::collections::BTreeMap;

use crate::api::reasons;
use crate::api::{
    DEFAULT_CHARON_IMAGE, DEFAULT_RELAYS, DistributedValidator, MemberSpec, ValidatorClient,
};
use crate::domain::placement::Zones;
use crate::domain::quorum::Quorum;
use crate::domain::spec_checks::validate_spec;

use super::model::*;

fn env_pairs(env: &[crate::api::EnvVar]) -> Vec<(String, String)> {
    env.iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

/// Validates a DV against what was read about it.
pub fn validate(dv: &DistributedValidator, facts: &Facts) -> Result<Cluster, Invalid> {
    let name = dv.metadata.name.clone().unwrap_or_default();
    let namespace = dv.metadata.namespace.clone().unwrap_or_default();
    let spec = &dv.spec;
    let report = validate_spec(&name, spec);
    if report.has_errors() {
        return Err(Invalid {
            reason: reasons::INVALID_SPEC,
            problems: report
                .errors()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
        });
    }
    let member_names: Vec<String> = spec.members.iter().map(|m| m.name.clone()).collect();
    let restarts = restart_requests(
        dv.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
        &member_names,
    )
    .map_err(|problems| Invalid {
        reason: reasons::INVALID_RESTART_REQUEST,
        problems,
    })?;
    let mut storage_growth = BTreeMap::new();
    let mut storage_refused = Vec::new();
    for (member, live) in &facts.live_claims {
        match crate::controller::storage::compare(member, &spec.storage, live) {
            crate::controller::storage::StorageChange::Unchanged => {}
            crate::controller::storage::StorageChange::Grow(claims) => {
                storage_growth.insert(member.clone(), claims);
            }
            crate::controller::storage::StorageChange::Refused(why) => storage_refused.extend(why),
        }
    }
    if !storage_refused.is_empty() {
        return Err(Invalid {
            reason: reasons::STORAGE_CHANGE_REFUSED,
            problems: storage_refused,
        });
    }
    let quorum = Quorum::new(spec.member_count(), spec.effective_threshold())
        .map_err(|e| Invalid {
            reason: reasons::INVALID_SPEC,
            problems: vec![format!("spec.threshold: {e}")],
        })?
        .0;
    let (lock_volume, lock_name) = match (&spec.cluster_lock.config_map, &spec.cluster_lock.secret)
    {
        (Some(cm), _) => (
            LockVolume::ConfigMap {
                name: cm.name.clone(),
                key: cm.key.clone(),
            },
            format!("ConfigMap {}", cm.name),
        ),
        (None, Some(secret)) => (
            LockVolume::Secret {
                name: secret.name.clone(),
                key: secret.key.clone(),
            },
            format!("Secret {}", secret.name),
        ),
        (None, None) => {
            return Err(Invalid {
                reason: reasons::INVALID_SPEC,
                problems: vec!["spec.clusterLock: set exactly one of configMap or secret".into()],
            });
        }
    };
    let read_lock = facts.lock.as_ref().map_err(|why| Invalid {
        reason: reasons::LOCK_UNAVAILABLE,
        problems: vec![why.clone()],
    })?;
    let summary = read_lock.summary.as_ref().map_err(|e| Invalid {
        reason: reasons::LOCK_UNAVAILABLE,
        problems: vec![format!("{lock_name}: {e}")],
    })?;
    let mut mismatches = Vec::new();
    if summary.operators != spec.members.len() {
        mismatches.push(format!(
            "the lock in {lock_name} has {} operators but the DV has {} members",
            summary.operators,
            spec.members.len()
        ));
    }
    if summary.threshold != quorum.threshold() {
        mismatches.push(format!(
            "the lock in {lock_name} has threshold {} but the DV's threshold is {}",
            summary.threshold,
            quorum.threshold()
        ));
    }
    if spec.test_network.is_some() && summary.is_mainnet() {
        mismatches.push(format!(
            "the lock in {lock_name} is for mainnet (fork version {}): test-network mode is refused for mainnet",
            crate::crypto::lock::MAINNET_FORK_VERSION
        ));
    }
    if !mismatches.is_empty() {
        return Err(Invalid {
            reason: reasons::LOCK_MISMATCH,
            problems: mismatches,
        });
    }
    // A lock whose shares do not belong to its group keys would run a weaker cluster than it
    // claims: nothing is built from it.
    let lock_problems = read_lock.problems.clone();
    if !lock_problems.is_empty() {
        return Err(Invalid {
            reason: reasons::LOCK_INVALID,
            problems: lock_problems
                .into_iter()
                .map(|p| format!("{lock_name}: {p}"))
                .collect(),
        });
    }
    let member_names: BTreeMap<usize, String> = spec
        .members
        .iter()
        .map(|m| (m.index as usize, m.name.clone()))
        .collect();
    let mut share_mismatches = Vec::new();
    let lock_hash = &read_lock.text_hash;
    let clients = assign_clients(&spec.members, &spec.client_diversity.clients);
    // Teku refuses to start without a fee recipient (its ValidatorConfig), and the only right one
    // is the lock's: a lock that names none cannot run a Teku member.
    let without_fee_recipient: Vec<usize> = summary
        .fee_recipients
        .iter()
        .enumerate()
        .filter(|(_, recipient)| recipient.is_none())
        .map(|(validator, _)| validator)
        .collect();
    if !without_fee_recipient.is_empty() && clients.contains(&Some(ValidatorClient::Teku)) {
        return Err(Invalid {
            reason: reasons::LOCK_INVALID,
            problems: vec![format!(
                "the lock in {lock_name} names no fee recipient for validator(s) {:?}, which Teku members need; use another client for them or a lock with fee_recipient_address",
                without_fee_recipient
            )],
        });
    }
    let previous_zones: BTreeMap<&str, &str> = dv
        .status
        .iter()
        .flat_map(|s| s.members.iter())
        .filter_map(|m| Some((m.name.as_str(), m.zone.as_deref()?)))
        .collect();
    // Zones are assigned to the members run here; a remote member is in another organisation's
    // infrastructure, a failure domain of its own as far as this cluster can tell.
    let local: Vec<&MemberSpec> = spec.members.iter().filter(|m| m.is_local()).collect();
    let mut local_zones = crate::domain::placement::assign_zones(
        &local
            .iter()
            .map(|m| crate::domain::placement::MemberZone {
                index: m.index,
                pinned: m.zone.clone(),
                previous: previous_zones.get(m.name.as_str()).map(|z| (*z).to_owned()),
            })
            .collect::<Vec<_>>(),
        &facts.zones,
    )
    .into_iter();
    let zones: Vec<Option<String>> = spec
        .members
        .iter()
        .map(|m| {
            if m.is_local() {
                local_zones.next().flatten()
            } else {
                None
            }
        })
        .collect();
    let images = &spec.validator_clients.images;
    let mut members = Vec::new();
    let mut blocked = Vec::new();
    // Under the Required policy a DV whose members cannot keep every zone at or below n - t is
    // not created: one zone outage would stop it signing.
    if spec.placement.policy == crate::api::Policy::Required {
        let budget = quorum.liveness_budget() as usize;
        let label = &spec.placement.zone_label;
        if facts.zones.is_empty() {
            return Err(Invalid {
                reason: reasons::PLACEMENT_UNSATISFIABLE,
                problems: vec![format!(
                    "no node carries the zone label {label:?}{}: label nodes with their zones, or set spec.placement.policy: Preferred",
                    if spec.placement.zones.is_empty() {
                        String::new()
                    } else {
                        format!(" with a zone in {}", spec.placement.zones.join(", "))
                    }
                )],
            });
        }
        let placed = crate::domain::placement::spread(
            spec.members.iter().zip(&zones).map(|(m, z)| match z {
                _ if m.remote => format!("(remote: {})", m.name),
                Some(zone) => zone.clone(),
                None => "(no zone)".to_owned(),
            }),
            quorum.members(),
            quorum.threshold(),
        );
        let unplaced = spec
            .members
            .iter()
            .zip(&zones)
            .any(|(m, z)| m.is_local() && z.is_none());
        if !placed.live || unplaced {
            let needed = (spec.members.len()).div_ceil(budget.max(1));
            return Err(Invalid {
                reason: reasons::PLACEMENT_UNSATISFIABLE,
                problems: vec![format!(
                    "members per zone would be {}: with threshold {} of {} at most {budget} may share a zone, or one zone outage stops signing; the cluster has {} zone(s) ({}); add nodes in at least {needed} zones, or set spec.placement.policy: Preferred",
                    placed.describe(),
                    quorum.threshold(),
                    quorum.members(),
                    facts.zones.len(),
                    facts
                        .zones
                        .iter()
                        .map(|(z, n)| format!("{z}: {n} node(s)"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )],
            });
        }
    }
    // The client each member runs and its last client move, as the last status recorded them.
    let previous: BTreeMap<&str, &crate::api::MemberStatus> = dv
        .status
        .iter()
        .flat_map(|s| s.members.iter())
        .map(|m| (m.name.as_str(), m))
        .collect();
    let annotations = dv.metadata.annotations.clone().unwrap_or_default();
    let moved_by_hand = |member: &MemberSpec, wanted: Option<ValidatorClient>| {
        wanted.is_some_and(|wanted| {
            annotations
                .get(&format!(
                    "{ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX}{}",
                    member.name
                ))
                .is_some_and(|v| v == wanted.as_str())
        })
    };
    let choices = crate::domain::client_moves::choose(
        &spec
            .members
            .iter()
            .zip(&clients)
            .map(|(member, wanted)| {
                let seen = previous.get(member.name.as_str());
                crate::domain::client_moves::MemberClients {
                    name: member.name.clone(),
                    remote: !member.is_local(),
                    running: seen.and_then(|m| m.validator_client),
                    wanted: *wanted,
                    recorded: seen.and_then(|m| m.client_move.as_ref()).map(|r| {
                        crate::domain::client_moves::RecordedMove {
                            from: r.from,
                            to: r.to,
                            finished: r.phase == crate::api::ClientMovePhase::Moved,
                            failed: r.phase == crate::api::ClientMovePhase::Failed,
                        }
                    }),
                    moved_by_hand: moved_by_hand(member, *wanted),
                }
            })
            .collect::<Vec<_>>(),
        quorum.threshold(),
        spec.client_diversity.policy == crate::api::Policy::Required,
    );
    let mut client_changes_held = Vec::new();
    let mut roster = Vec::new();
    for ((member, choice), zone) in spec.members.iter().zip(choices).zip(zones) {
        use crate::domain::client_moves::Choice;
        // The image the old client ran: the one the move recorded, else the DV's image for that
        // client (a member's own image override names its new client's).
        let moving = |from: ValidatorClient, to: ValidatorClient| {
            let recorded = previous
                .get(member.name.as_str())
                .and_then(|m| m.client_move.as_ref())
                .filter(|r| r.from == from && r.to == to)
                .map(|r| r.from_image.clone());
            let from_image = recorded.unwrap_or_else(|| dv_client_image(images, from));
            (
                to,
                Some(crate::controller::model::Migration {
                    from,
                    to,
                    from_image,
                }),
            )
        };
        let (client, migration) = match choice {
            Choice::Remote => {
                // Run by another organisation: it counts for quorum and diversity, nothing is
                // built.
                roster.push(RosterEntry {
                    name: member.name.clone(),
                    index: member.index,
                    operator_name: member.operator.name.clone(),
                    operator_class: member.operator.class,
                    client: member.validator_client,
                    remote: true,
                });
                continue;
            }
            Choice::Run(client) => (client, None),
            Choice::Move { from, to } => moving(from, to),
            Choice::Hold {
                running,
                wanted,
                why,
            } => {
                client_changes_held.push(ClientChangeHeld {
                    member: member.name.clone(),
                    running,
                    wanted,
                    why: why.clone(),
                });
                match why {
                    // The unfinished move goes on, steps and all.
                    crate::domain::client_moves::HoldReason::MoveUnfinished { from, to } => {
                        moving(from, to)
                    }
                    _ => (running, None),
                }
            }
        };
        roster.push(RosterEntry {
            name: member.name.clone(),
            index: member.index,
            operator_name: member.operator.name.clone(),
            operator_class: member.operator.class,
            client: Some(client),
            remote: false,
        });
        // The spec checks require both of a local member; a spec that slipped past them blocks
        // only this member.
        let (Some(key_share_secret), Some(enr_secret)) =
            (&member.key_share_secret, &member.enr_secret)
        else {
            blocked.push(MemberProblem {
                member: member.name.clone(),
                kind: ProblemKind::SecretsMissing(Vec::new()),
                why: format!(
                    "member {} names no keyShareSecret or enrSecret",
                    member.name
                ),
            });
            continue;
        };
        let missing: Vec<(&str, &String)> = [
            ("key-share", &key_share_secret.name),
            ("ENR", &enr_secret.name),
        ]
        .into_iter()
        .filter(|(_, secret)| !facts.secrets.contains_key(*secret))
        .collect();
        if !missing.is_empty() {
            let why: Vec<String> = missing
                .iter()
                .map(|(what, secret)| {
                    format!(
                        "{what} Secret {secret:?} of member {} does not exist",
                        member.name
                    )
                })
                .collect();
            blocked.push(MemberProblem {
                member: member.name.clone(),
                kind: ProblemKind::SecretsMissing(
                    missing
                        .iter()
                        .map(|(_, secret)| (*secret).clone())
                        .collect(),
                ),
                why: why.join("; "),
            });
            continue;
        }
        // The member's keystores must hold its own share of every validator: someone else's
        // share would make two signers of one share.
        let share_problems = match facts.keystores.get(&key_share_secret.name) {
            Some(Ok(keys)) => crate::crypto::keystore::check_member(
                &member.name,
                member.index as usize,
                &key_share_secret.name,
                keys,
                summary,
                &member_names,
            ),
            Some(Err(why)) => vec![format!(
                "member {}: Secret {:?}: {why}",
                member.name, key_share_secret.name
            )],
            None => vec![format!(
                "member {}: the keystores of Secret {:?} were not read",
                member.name, key_share_secret.name
            )],
        };
        if !share_problems.is_empty() {
            share_mismatches.push(MemberProblem {
                member: member.name.clone(),
                kind: ProblemKind::ShareMismatch,
                why: share_problems.join("; "),
            });
            continue;
        }
        let version = |secret: &str| {
            facts
                .secrets
                .get(secret)
                .map(|s| s.resource_version.clone())
                .unwrap_or_default()
        };
        let overrides = member.images.clone().unwrap_or_default();
        let client_image = overrides
            .validator_client
            .clone()
            .unwrap_or_else(|| dv_client_image(images, client));
        members.push(Member {
            name: member.name.clone(),
            index: member.index,
            client,
            zone,
            operator_name: member.operator.name.clone(),
            operator_class: member.operator.class,
            key_share_secret: key_share_secret.name.clone(),
            enr_secret: enr_secret.name.clone(),
            enr_key: enr_secret.key.clone(),
            charon_image: overrides
                .charon
                .clone()
                .or_else(|| spec.charon.image.clone())
                .unwrap_or_else(|| DEFAULT_CHARON_IMAGE.to_owned()),
            client_image,
            charon_resources: member.resources.as_ref().and_then(|r| r.charon.clone()),
            client_resources: member
                .resources
                .as_ref()
                .and_then(|r| r.validator_client.clone()),
            node_selector: member.node_selector.clone(),
            tolerations: member.tolerations.clone(),
            inputs_hash: stable_hash(&[
                lock_hash,
                &key_share_secret.name,
                &version(&key_share_secret.name),
                &enr_secret.name,
                &version(&enr_secret.name),
            ]),
            p2p_port: member
                .node_port
                .filter(|_| {
                    spec.p2p
                        .as_ref()
                        .is_some_and(|p| p.service_type == crate::api::ExposureType::NodePort)
                })
                .map_or(crate::controller::names::PORT_P2P, i32::from),
            external_address: member.external_address.clone().or_else(|| {
                spec.p2p
                    .as_ref()
                    .and_then(|_| facts.p2p_addresses.get(&member.name).cloned())
            }),
            // RFC 3339 UTC times of one format compare as text.
            restart_requested_at: [
                restarts.get(&None),
                restarts.get(&Some(member.name.clone())),
            ]
            .into_iter()
            .flatten()
            .max()
            .cloned(),
            migration,
            history_moved_by_hand: moved_by_hand(member, Some(client)),
        });
    }
    members.sort_by_key(|m| m.index);
    roster.sort_by_key(|m| m.index);
    // Quorum across organisations: a remote member counts while a member here saw it answer.
    let remote_up = roster
        .iter()
        .filter(|m| m.remote && facts.peers.up.contains(&m.index))
        .count() as u32;
    blocked.sort();
    share_mismatches.sort();
    let relays = if spec.charon.relays.is_empty() {
        DEFAULT_RELAYS.iter().map(|r| (*r).to_owned()).collect()
    } else {
        spec.charon.relays.clone()
    };
    Ok(Cluster {
        name,
        namespace,
        uid: dv.metadata.uid.clone().unwrap_or_default(),
        quorum,
        network: spec.network,
        lock: lock_volume,
        lock_summary: summary.clone(),
        beacon_endpoints: spec.beacon_endpoints().to_vec(),
        beacon_headers_secret: spec
            .beacon_nodes
            .as_ref()
            .and_then(|b| b.headers_secret.clone()),
        test_network: spec.test_network.clone(),
        relays,
        builder_api: spec.charon.builder_api,
        log_level: spec.charon.log_level,
        charon_extra_args: spec.charon.extra_args.clone(),
        charon_extra_env: env_pairs(&spec.charon.extra_env),
        client_extra_args: spec.validator_clients.extra_args.clone(),
        client_extra_env: env_pairs(&spec.validator_clients.extra_env),
        storage: spec.storage.clone(),
        zone_label: spec.placement.zone_label.clone(),
        network_policy: spec.network_policy.clone(),
        zones: facts.zones.clone(),
        members,
        blocked,
        share_mismatches,
        storage_growth,
        client_changes_held,
        rollout: rollout_settings(dv, quorum.threshold().saturating_sub(remote_up)),
        p2p: spec.p2p.clone(),
        roster,
        peers: facts.peers.clone(),
        remote_up,
    })
}

/// The planner's pacing from `spec.rollout`, paused also by the `dvt.io/paused` annotation.
fn rollout_settings(dv: &DistributedValidator, threshold: u32) -> crate::domain::planner::Settings {
    let rollout = &dv.spec.rollout;
    let seconds = |s: u32| std::time::Duration::from_secs(u64::from(s));
    crate::domain::planner::Settings {
        threshold,
        max_unavailable: rollout.max_unavailable,
        min_ready: seconds(rollout.min_ready_seconds),
        restart_delay: seconds(rollout.restart_delay_seconds),
        restart_backoff: seconds(rollout.restart_backoff_seconds),
        max_restart_backoff: seconds(rollout.max_restart_backoff_seconds),
        paused: crate::controller::is_paused(dv),
    }
}

/// Images used when neither the DV nor the member names one (versions Obol's
/// charon-distributed-validator-node pins alongside Charon v1.7; their flags were read from
/// each client's source: see [`crate::controller::build::clients::PINNED`]).
/// The image of `client` for members that name none of their own: the DV's, else the pinned.
pub fn dv_client_image(images: &crate::api::ClientImages, client: ValidatorClient) -> String {
    match client {
        ValidatorClient::Lighthouse => images.lighthouse.clone(),
        ValidatorClient::Teku => images.teku.clone(),
        ValidatorClient::Prysm => images.prysm.clone(),
        ValidatorClient::Nimbus => images.nimbus.clone(),
        ValidatorClient::Lodestar => images.lodestar.clone(),
    }
    .unwrap_or_else(|| default_client_image(client).to_owned())
}

pub fn default_client_image(client: ValidatorClient) -> &'static str {
    crate::controller::build::clients::default_image(client)
}

/// The DV and the facts (lock, Secrets' versions, keystore public keys) of a manifest like the
/// examples, as the controller would read them from a cluster with `zones`; for tests and
/// benchmarks that validate and build without a cluster.
pub fn manifest_facts(text: &str, zones: Zones) -> Result<(DistributedValidator, Facts), String> {
    use serde::Deserialize;
    let mut dv = None;
    let mut facts = Facts {
        lock: Err("no lock in the manifest".into()),
        secrets: Default::default(),
        keystores: Default::default(),
        zones,
        live_claims: Default::default(),
        p2p_addresses: Default::default(),
        peers: Default::default(),
    };
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
        match value["kind"].as_str() {
            Some("DistributedValidator") => {
                dv = Some(
                    serde_yaml::from_value::<DistributedValidator>(value)
                        .map_err(|e| e.to_string())?,
                )
            }
            Some("ConfigMap") => {
                facts.lock = Ok(std::sync::Arc::new(ReadLock::from_text(
                    value["data"]["cluster-lock.json"]
                        .as_str()
                        .unwrap_or_default(),
                )))
            }
            Some("Secret") => {
                let name = value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(data) = value["stringData"].as_mapping() {
                    let entries: Vec<(String, Vec<u8>)> = data
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.as_str()?.to_owned(), v.as_str()?.as_bytes().to_vec()))
                        })
                        .collect();
                    if entries.iter().any(|(k, _)| k.starts_with("keystore-")) {
                        facts.keystores.insert(
                            name.clone(),
                            crate::crypto::keystore::public_keys(
                                entries.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                            ),
                        );
                    }
                }
                facts.secrets.insert(
                    name,
                    SecretFacts {
                        resource_version: "1".into(),
                    },
                );
            }
            _ => {}
        }
    }
    Ok((dv.ok_or("no DistributedValidator in the manifest")?, facts))
}

#[cfg(test)]
mod tests;
