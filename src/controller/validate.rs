//! The validate step: from a DistributedValidator and the facts read about it (its lock, which
//! Secrets exist, their keystores' public keys) to a [`Cluster`] the builders work from, or the
//! [`Invalid`] problems that stop it. Pure.

use std::collections::BTreeMap;

use crate::api::{DEFAULT_RELAYS, DistributedValidator, DistributedValidatorSpec, ValidatorClient};
use crate::controller::storage::{self, StorageChange};
use crate::domain::placement::Zones;
use crate::domain::quorum::Quorum;
use crate::domain::spec_checks::validate_spec;

use super::model::{
    Cluster, Facts, Invalid, ReadLock, Refusal, SecretFacts, assign_clients, restart_requests,
};

mod lock;
mod members;
mod zones;

fn env_pairs(env: &[crate::api::EnvVar]) -> Vec<(String, String)> {
    env.iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

/// Validates a DV against what was read about it: a pipeline of checks, each of which may
/// refuse the whole DV, then every member settled (built, blocked, mismatched or remote).
pub fn validate(dv: &DistributedValidator, facts: &Facts) -> Result<Cluster, Invalid> {
    let spec = &dv.spec;
    check_spec(dv)?;
    let restarts = restarts_asked(dv)?;
    let storage_growth = storage_growth(spec, facts)?;
    let quorum = quorum_of(spec)?;
    let lock = lock::checked(spec, facts, quorum)?;
    let clients = assign_clients(&spec.members, &spec.client_diversity.clients);
    lock::check_fee_recipients(&lock, &clients)?;
    let zones = zones::member_zones(dv, facts);
    zones::check_required(spec, quorum, &zones, facts)?;
    let inputs = members::MemberInputs::new(dv, facts, &lock, &restarts);
    let settled = members::settle(&inputs, &clients, quorum.threshold(), zones);
    Ok(assemble(dv, facts, quorum, &lock, storage_growth, settled))
}

/// The spec's own rules ([`validate_spec`]).
fn check_spec(dv: &DistributedValidator) -> Result<(), Invalid> {
    let name = dv.metadata.name.as_deref().unwrap_or_default();
    let report = validate_spec(name, &dv.spec);
    if !report.has_errors() {
        return Ok(());
    }
    Err(Invalid::new(
        Refusal::InvalidSpec,
        report
            .errors()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect(),
    ))
}

/// The restarts the DV's annotations ask for, by member.
fn restarts_asked(dv: &DistributedValidator) -> Result<BTreeMap<Option<String>, String>, Invalid> {
    let member_names: Vec<String> = dv.spec.members.iter().map(|m| m.name.clone()).collect();
    restart_requests(
        dv.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
        &member_names,
    )
    .map_err(|problems| Invalid::new(Refusal::InvalidRestartRequest, problems))
}

/// The claims that grow, by member, or the changes a live claim cannot take.
fn storage_growth(
    spec: &DistributedValidatorSpec,
    facts: &Facts,
) -> Result<BTreeMap<String, Vec<(String, String)>>, Invalid> {
    let mut growth = BTreeMap::new();
    let mut refused = Vec::new();
    for (member, live) in &facts.live_claims {
        match storage::compare(member, &spec.storage, live) {
            StorageChange::Unchanged => {}
            StorageChange::Grow(claims) => {
                growth.insert(member.clone(), claims);
            }
            StorageChange::Refused(why) => refused.extend(why),
        }
    }
    if refused.is_empty() {
        Ok(growth)
    } else {
        Err(Invalid::new(Refusal::StorageChangeRefused, refused))
    }
}

fn quorum_of(spec: &DistributedValidatorSpec) -> Result<Quorum, Invalid> {
    Quorum::new(spec.member_count(), spec.effective_threshold())
        .map(|(quorum, _)| quorum)
        .map_err(|e| Invalid::one(Refusal::InvalidSpec, format!("spec.threshold: {e}")))
}

/// The validated DV from its spec and its settled members.
fn assemble(
    dv: &DistributedValidator,
    facts: &Facts,
    quorum: Quorum,
    lock: &lock::CheckedLock,
    storage_growth: BTreeMap<String, Vec<(String, String)>>,
    settled: members::Settled,
) -> Cluster {
    let spec = &dv.spec;
    // Quorum across organisations: a remote member counts while a member here saw it answer.
    let remote_up = settled
        .roster
        .iter()
        .filter(|m| m.remote && facts.peers.up.contains(&m.index))
        .count() as u32;
    let relays = if spec.charon.relays.is_empty() {
        DEFAULT_RELAYS.iter().map(|r| (*r).to_owned()).collect()
    } else {
        spec.charon.relays.clone()
    };
    Cluster {
        name: dv.metadata.name.clone().unwrap_or_default(),
        namespace: dv.metadata.namespace.clone().unwrap_or_default(),
        uid: dv.metadata.uid.clone().unwrap_or_default(),
        quorum,
        network: spec.network,
        lock: lock.volume.clone(),
        lock_summary: lock.summary.clone(),
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
        members: settled.members,
        blocked: settled.blocked,
        share_mismatches: settled.share_mismatches,
        storage_growth,
        client_changes_held: settled.client_changes_held,
        rollout: rollout_settings(dv, quorum.threshold().saturating_sub(remote_up)),
        p2p: spec.p2p.clone(),
        roster: settled.roster,
        peers: facts.peers.clone(),
        remote_up,
    }
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
