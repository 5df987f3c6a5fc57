//! From a DistributedValidator and the facts read about it (its lock, which Secrets exist) to a
//! validated cluster the builders work from, or the problems that stop it. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};

use crate::api::reasons;
use crate::api::{
    DEFAULT_CHARON_IMAGE, DEFAULT_RELAYS, DistributedValidator, LogLevel, MemberSpec, Network,
    OperatorClass, StorageSpec, ValidatorClient,
};
use crate::lock::{self, LockSummary};
use crate::placement::Zones;
use crate::quorum::Quorum;
use crate::validate::validate_spec;

/// What dereferencing found: the lock's text and the Secrets that exist (by name, with their
/// resourceVersion; never their data).
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The lock document, or why it could not be read (missing ConfigMap, missing key).
    pub lock: Result<String, String>,
    /// What `lock::verify` says about that lock, when already known: verifying is BLS work the
    /// controller does once per lock document, not on every reconcile. `None`: validate verifies.
    pub lock_verification: Option<Vec<crate::lock::LockProblem>>,
    pub secrets: BTreeMap<String, SecretFacts>,
    /// Public keys of each key-share Secret's keystores (by Secret name, then validator), or why
    /// they could not be read.
    pub keystores: BTreeMap<String, Result<BTreeMap<usize, String>, String>>,
    /// Nodes per zone (by the DV's zone label, within its allowed zones). Every labelled node
    /// counts, healthy or not: a zone that is down is still the zone its members' data is in.
    pub zones: crate::placement::Zones,
    /// The claim templates of each member's live StatefulSet (by member name): what
    /// `spec.storage` is compared with, since a StatefulSet's claims cannot change.
    pub live_claims: BTreeMap<String, Vec<crate::controller::storage::LiveClaim>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretFacts {
    pub resource_version: String,
}

/// Where the lock comes from, for the pod's volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockVolume {
    ConfigMap { name: String, key: String },
    Secret { name: String, key: String },
}

/// One member, validated: every value the builders need, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub index: u32,
    pub client: ValidatorClient,
    /// Zone the member must run in, when pinned.
    pub zone: Option<String>,
    pub operator_name: String,
    pub operator_class: OperatorClass,
    pub key_share_secret: String,
    pub enr_secret: String,
    pub enr_key: String,
    pub charon_image: String,
    pub client_image: String,
    pub charon_resources: Option<ResourceRequirements>,
    pub client_resources: Option<ResourceRequirements>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// Hash of the lock and this member's Secrets' versions: what its pod was started from.
    pub inputs_hash: String,
    /// The latest restart asked for this member (`kubectl dv restart`, `kubectl dv rollout
    /// restart`), as written in the DV's annotation: copied into the pod template, so that a
    /// member whose pod predates the request is outdated and restarted as a rollout step, one
    /// member at a time within the quorum budget.
    pub restart_requested_at: Option<String>,
}

/// DV annotation releasing a held client change of one member:
/// `slashing-protection.dvt.io/<member>: <new client>`, written by whoever moved the member's
/// slashing-protection history (EIP-3076 interchange) to the new client by hand.
pub const ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX: &str = "slashing-protection.dvt.io/";

/// A member whose validator client would change, kept on the client it runs: the new client
/// would start on the member's volume with an empty slashing-protection database (the old
/// client's history left unread), free to sign what the old one already signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientChangeHeld {
    pub member: String,
    pub running: ValidatorClient,
    pub wanted: ValidatorClient,
}

impl ClientChangeHeld {
    pub fn message(&self) -> String {
        format!(
            "member {} runs {} and the spec asks for {}: held on {}, since {} would start without the member's slashing-protection history (migrating it is not built yet). Export it from {} (EIP-3076 interchange), import it into {}, then annotate the DV {}{}={}",
            self.member,
            self.running.as_str(),
            self.wanted.as_str(),
            self.running.as_str(),
            self.wanted.as_str(),
            self.running.as_str(),
            self.wanted.as_str(),
            ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX,
            self.member,
            self.wanted.as_str()
        )
    }
}

/// DV annotation asking for a restart of one member: `restart.dvt.io/<member>: <RFC 3339 time>`.
pub const ANNOTATION_RESTART_MEMBER_PREFIX: &str = "restart.dvt.io/";
/// DV annotation asking for a restart of every member, one at a time: `<RFC 3339 time>`.
pub const ANNOTATION_RESTART_ALL: &str = "dvt.io/restart-all";

/// The restart requests among a DV's annotations, by member (`None` key: every member), or the
/// problems with them: a time that is not RFC 3339, a member the DV does not have.
pub fn restart_requests(
    annotations: &BTreeMap<String, String>,
    members: &[String],
) -> Result<BTreeMap<Option<String>, String>, Vec<String>> {
    let mut requests = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in annotations {
        let member = if key == ANNOTATION_RESTART_ALL {
            None
        } else if let Some(member) = key.strip_prefix(ANNOTATION_RESTART_MEMBER_PREFIX) {
            if !members.iter().any(|m| m == member) {
                problems.push(format!(
                    "metadata.annotations[{key}]: no member named {member:?}"
                ));
                continue;
            }
            Some(member.to_owned())
        } else {
            continue;
        };
        match value.parse::<k8s_openapi::jiff::Timestamp>() {
            // Normalised, so that the same instant always gives the same pod template.
            Ok(at) => {
                requests.insert(member, at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            }
            Err(_) => problems.push(format!(
                "metadata.annotations[{key}]: {value:?} is not an RFC 3339 time (e.g. 2026-12-01T10:00:00Z)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(requests)
    } else {
        Err(problems)
    }
}

/// Why one member cannot be built or changed (a missing Secret, a keystore that does not hold
/// its share): nothing is created or changed for it, and its pod, if any, is left alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberProblem {
    pub member: String,
    pub why: String,
}

/// A DV that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub quorum: Quorum,
    pub network: Network,
    pub lock: LockVolume,
    pub lock_summary: LockSummary,
    pub beacon_endpoints: Vec<String>,
    pub relays: Vec<String>,
    pub builder_api: bool,
    pub log_level: LogLevel,
    pub charon_extra_args: Vec<String>,
    pub charon_extra_env: Vec<(String, String)>,
    pub client_extra_args: Vec<String>,
    pub client_extra_env: Vec<(String, String)>,
    pub storage: StorageSpec,
    /// Label key that names a node's zone.
    pub zone_label: String,
    pub network_policy: crate::api::NetworkPolicySpec,
    /// Nodes per zone the members were placed over.
    pub zones: crate::placement::Zones,
    /// Members ready to build, by share index.
    pub members: Vec<Member>,
    /// Members that cannot be built (a Secret is missing), with the reason. Nothing is created
    /// or changed for them.
    pub blocked: Vec<MemberProblem>,
    /// Members whose keystores do not hold their share of the lock, with the problems. Nothing
    /// is created or changed for them; a running pod is left alone.
    pub share_mismatches: Vec<MemberProblem>,
    /// Members whose claims grow (by member name: claim template and new size): their PVCs are
    /// expanded and their StatefulSet recreated before it is applied again.
    pub storage_growth: BTreeMap<String, Vec<(String, String)>>,
    /// Members kept on the client they run although the spec asks for another.
    pub client_changes_held: Vec<ClientChangeHeld>,
}

/// Why a DV as a whole cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Condition reason.
    pub reason: &'static str,
    /// Every problem, sorted, one line each.
    pub problems: Vec<String>,
}

impl Invalid {
    pub fn message(&self) -> String {
        self.problems.join("; ")
    }
}

/// FNV-1a, hex: stable across processes and versions (unlike `DefaultHasher`), for hashes
/// stored on objects.
pub fn stable_hash(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Clients for members that do not pin one: each goes to the allowed client with the fewest
/// members so far (pinned members count), ties broken by the order of the allowed list.
pub fn assign_clients(members: &[MemberSpec], allowed: &[ValidatorClient]) -> Vec<ValidatorClient> {
    let allowed: Vec<ValidatorClient> = if allowed.is_empty() {
        ValidatorClient::ALL.to_vec()
    } else {
        allowed.to_vec()
    };
    let mut counts: BTreeMap<ValidatorClient, usize> = BTreeMap::new();
    for member in members {
        if let Some(client) = member.validator_client {
            *counts.entry(client).or_default() += 1;
        }
    }
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&i| members[i].index);
    let mut assigned: Vec<Option<ValidatorClient>> =
        members.iter().map(|m| m.validator_client).collect();
    for i in order {
        if assigned[i].is_some() {
            continue;
        }
        let choice = allowed
            .iter()
            .copied()
            .min_by_key(|c| {
                (
                    counts.get(c).copied().unwrap_or(0),
                    allowed.iter().position(|a| a == c),
                )
            })
            .unwrap_or(ValidatorClient::Lighthouse);
        *counts.entry(choice).or_default() += 1;
        assigned[i] = Some(choice);
    }
    assigned
        .into_iter()
        .map(|c| c.unwrap_or(ValidatorClient::Lighthouse))
        .collect()
}

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
    let lock_text = facts.lock.clone().map_err(|why| Invalid {
        reason: reasons::LOCK_UNAVAILABLE,
        problems: vec![why],
    })?;
    let summary = lock::summarize(&lock_text).map_err(|e| Invalid {
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
    if !mismatches.is_empty() {
        return Err(Invalid {
            reason: reasons::LOCK_MISMATCH,
            problems: mismatches,
        });
    }
    // A lock whose shares do not belong to its group keys would run a weaker cluster than it
    // claims: nothing is built from it.
    let lock_problems = facts
        .lock_verification
        .clone()
        .unwrap_or_else(|| lock::verify(&summary));
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
    let lock_hash = stable_hash(&[&lock_text]);
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
    if !without_fee_recipient.is_empty() && clients.contains(&ValidatorClient::Teku) {
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
    let zones = crate::placement::assign_zones(
        &spec
            .members
            .iter()
            .map(|m| crate::placement::MemberZone {
                index: m.index,
                pinned: m.zone.clone(),
                previous: previous_zones.get(m.name.as_str()).map(|z| (*z).to_owned()),
            })
            .collect::<Vec<_>>(),
        &facts.zones,
    );
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
        let placed = crate::placement::spread(
            zones
                .iter()
                .map(|z| z.clone().unwrap_or_else(|| "(no zone)".to_owned())),
            quorum.members(),
            quorum.threshold(),
        );
        if !placed.live || zones.iter().any(Option::is_none) {
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
    // The client each member runs, as the last status recorded it.
    let running_clients: BTreeMap<&str, ValidatorClient> = dv
        .status
        .iter()
        .flat_map(|s| s.members.iter())
        .filter_map(|m| Some((m.name.as_str(), m.validator_client?)))
        .collect();
    let annotations = dv.metadata.annotations.clone().unwrap_or_default();
    let mut client_changes_held = Vec::new();
    for ((member, wanted), zone) in spec.members.iter().zip(clients).zip(zones) {
        let released = |wanted: ValidatorClient| {
            annotations
                .get(&format!(
                    "{ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX}{}",
                    member.name
                ))
                .is_some_and(|v| v == wanted.as_str())
        };
        let client = match running_clients.get(member.name.as_str()) {
            Some(&running) if running != wanted && !released(wanted) => {
                client_changes_held.push(ClientChangeHeld {
                    member: member.name.clone(),
                    running,
                    wanted,
                });
                running
            }
            _ => wanted,
        };
        let missing: Vec<String> = [
            ("key-share", &member.key_share_secret.name),
            ("ENR", &member.enr_secret.name),
        ]
        .into_iter()
        .filter(|(_, secret)| !facts.secrets.contains_key(*secret))
        .map(|(what, secret)| {
            format!(
                "{what} Secret {secret:?} of member {} does not exist",
                member.name
            )
        })
        .collect();
        if !missing.is_empty() {
            blocked.push(MemberProblem {
                member: member.name.clone(),
                why: missing.join("; "),
            });
            continue;
        }
        // The member's keystores must hold its own share of every validator: someone else's
        // share would make two signers of one share.
        let share_problems = match facts.keystores.get(&member.key_share_secret.name) {
            Some(Ok(keys)) => crate::keystore::check_member(
                &member.name,
                member.index as usize,
                &member.key_share_secret.name,
                keys,
                &summary,
                &member_names,
            ),
            Some(Err(why)) => vec![format!(
                "member {}: Secret {:?}: {why}",
                member.name, member.key_share_secret.name
            )],
            None => vec![format!(
                "member {}: the keystores of Secret {:?} were not read",
                member.name, member.key_share_secret.name
            )],
        };
        if !share_problems.is_empty() {
            share_mismatches.push(MemberProblem {
                member: member.name.clone(),
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
            .or_else(|| match client {
                ValidatorClient::Lighthouse => images.lighthouse.clone(),
                ValidatorClient::Teku => images.teku.clone(),
                ValidatorClient::Prysm => images.prysm.clone(),
                ValidatorClient::Nimbus => images.nimbus.clone(),
                ValidatorClient::Lodestar => images.lodestar.clone(),
            })
            .unwrap_or_else(|| default_client_image(client).to_owned());
        members.push(Member {
            name: member.name.clone(),
            index: member.index,
            client,
            zone,
            operator_name: member.operator.name.clone(),
            operator_class: member.operator.class,
            key_share_secret: member.key_share_secret.name.clone(),
            enr_secret: member.enr_secret.name.clone(),
            enr_key: member.enr_secret.key.clone(),
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
                &lock_hash,
                &member.key_share_secret.name,
                &version(&member.key_share_secret.name),
                &member.enr_secret.name,
                &version(&member.enr_secret.name),
            ]),
            // RFC 3339 UTC times of one format compare as text.
            restart_requested_at: [
                restarts.get(&None),
                restarts.get(&Some(member.name.clone())),
            ]
            .into_iter()
            .flatten()
            .max()
            .cloned(),
        });
    }
    members.sort_by_key(|m| m.index);
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
        lock_summary: summary,
        beacon_endpoints: spec.beacon_nodes.endpoints.clone(),
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
    })
}

/// Images used when neither the DV nor the member names one (versions Obol's
/// charon-distributed-validator-node pins alongside Charon v1.7; their flags were read from
/// each client's source: see [`crate::controller::build::clients::PINNED`]).
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
        lock_verification: None,
        secrets: Default::default(),
        keystores: Default::default(),
        zones,
        live_claims: Default::default(),
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
                facts.lock = Ok(value["data"]["cluster-lock.json"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
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
                            crate::keystore::public_keys(
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
mod tests {
    use super::*;
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
        assert_eq!(invalid.reason, reasons::LOCK_MISMATCH);
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
        assert_eq!(invalid.reason, reasons::LOCK_UNAVAILABLE);
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
    fn a_client_change_is_held_on_the_running_client_until_released() {
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
        dv.spec.members[0].validator_client = Some(ValidatorClient::Nimbus);
        let held = validate(&dv, &facts).unwrap();
        assert_eq!(held.members[0].client, ValidatorClient::Lighthouse);
        assert_eq!(
            held.client_changes_held,
            [ClientChangeHeld {
                member: "alpha".into(),
                running: ValidatorClient::Lighthouse,
                wanted: ValidatorClient::Nimbus,
            }]
        );
        assert!(
            held.client_changes_held[0]
                .message()
                .ends_with("then annotate the DV slashing-protection.dvt.io/alpha=nimbus")
        );
        // The build is exactly the running one: nothing restarts.
        assert_eq!(
            crate::controller::build::build(&held),
            crate::controller::build::build(&first)
        );

        dv.metadata.annotations = Some(BTreeMap::from([(
            "slashing-protection.dvt.io/alpha".to_owned(),
            "nimbus".to_owned(),
        )]));
        let released = validate(&dv, &facts).unwrap();
        assert_eq!(released.members[0].client, ValidatorClient::Nimbus);
        assert!(released.client_changes_held.is_empty());
        // A release for another client does not release this change.
        dv.metadata.annotations = Some(BTreeMap::from([(
            "slashing-protection.dvt.io/alpha".to_owned(),
            "teku".to_owned(),
        )]));
        assert_eq!(
            validate(&dv, &facts).unwrap().members[0].client,
            ValidatorClient::Lighthouse
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
        assert_eq!(invalid.reason, "InvalidRestartRequest");
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
        assert_eq!(invalid.reason, reasons::PLACEMENT_UNSATISFIABLE);
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
        dv.spec.members[1].key_share_secret.name = "bravo-copy".into();
        let cluster = validate(&dv, &facts).unwrap();
        assert_eq!(cluster.members.len(), 3);
        let MemberProblem { member, why } = &cluster.share_mismatches[0];
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
        let mut lock: serde_json::Value =
            serde_json::from_str(&facts.lock.clone().unwrap()).unwrap();
        let shares = lock["distributed_validators"][0]["public_shares"]
            .as_array_mut()
            .unwrap();
        shares.swap(0, 1);
        facts.lock = Ok(lock.to_string());
        let invalid = validate(&dv, &facts).unwrap_err();
        assert_eq!(invalid.reason, reasons::LOCK_INVALID);
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
        for c in &clients {
            *counts.entry(*c).or_default() += 1;
        }
        assert_eq!(counts.values().max(), Some(&3));
        assert_eq!(counts.values().min(), Some(&2));
    }
}
