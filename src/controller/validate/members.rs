//! The member part of validation: each member of the spec settled as remote, built, blocked
//! (a Secret missing) or mismatched (keystores that do not hold its share), with the client it
//! runs and whether its client change waits.

use std::collections::BTreeMap;

use crate::api::{
    ClientMovePhase, DEFAULT_CHARON_IMAGE, DistributedValidator, EnrSecretRef, ExposureType,
    MemberSpec, MemberStatus, Policy, SecretRef, ValidatorClient,
};
use crate::controller::model::{
    ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX, ClientChangeHeld, Facts, Member, MemberProblem,
    Migration, ProblemKind, RosterEntry, stable_hash,
};
use crate::controller::names::PORT_P2P;
use crate::domain::client_moves::{self, Choice, HoldReason, MemberClients, RecordedMove};

use super::dv_client_image;
use super::lock::CheckedLock;

/// Every member of the spec, settled. Each list is sorted (members and roster by share index).
#[derive(Default)]
pub struct Settled {
    pub members: Vec<Member>,
    pub roster: Vec<RosterEntry>,
    pub blocked: Vec<MemberProblem>,
    pub share_mismatches: Vec<MemberProblem>,
    pub client_changes_held: Vec<ClientChangeHeld>,
}

/// What settling a member reads beside its spec.
pub struct MemberInputs<'a> {
    pub dv: &'a DistributedValidator,
    pub facts: &'a Facts,
    pub lock: &'a CheckedLock<'a>,
    /// The restarts asked by annotation, by member (`None`: every member).
    pub restarts: &'a BTreeMap<Option<String>, String>,
    /// Each member as the last status recorded it: its client and last client move.
    previous: BTreeMap<&'a str, &'a MemberStatus>,
    /// Member names by share index, for the keystore check's messages.
    names_by_index: BTreeMap<usize, String>,
}

impl<'a> MemberInputs<'a> {
    pub fn new(
        dv: &'a DistributedValidator,
        facts: &'a Facts,
        lock: &'a CheckedLock<'a>,
        restarts: &'a BTreeMap<Option<String>, String>,
    ) -> Self {
        let previous = dv
            .status
            .iter()
            .flat_map(|s| s.members.iter())
            .map(|m| (m.name.as_str(), m))
            .collect();
        let names_by_index = dv
            .spec
            .members
            .iter()
            .map(|m| (m.index as usize, m.name.clone()))
            .collect();
        MemberInputs {
            dv,
            facts,
            lock,
            restarts,
            previous,
            names_by_index,
        }
    }
}

/// Settles every member: `clients` is what each asks for (pinned or assigned), `zones` where
/// each runs, both in spec order.
pub fn settle(
    inputs: &MemberInputs,
    clients: &[Option<ValidatorClient>],
    threshold: u32,
    zones: Vec<Option<String>>,
) -> Settled {
    let choices = choose_clients(inputs, clients, threshold);
    let mut settled = Settled::default();
    for ((member, choice), zone) in inputs.dv.spec.members.iter().zip(choices).zip(zones) {
        settled.add(inputs, member, choice, zone);
    }
    settled.members.sort_by_key(|m| m.index);
    settled.roster.sort_by_key(|m| m.index);
    settled.blocked.sort();
    settled.share_mismatches.sort();
    settled
}

/// The client each member runs, as [`client_moves::choose`] decides from what it asks for, what
/// it ran and its last move.
fn choose_clients(
    inputs: &MemberInputs,
    clients: &[Option<ValidatorClient>],
    threshold: u32,
) -> Vec<Choice> {
    let spec = &inputs.dv.spec;
    let known: Vec<MemberClients> = spec
        .members
        .iter()
        .zip(clients)
        .map(|(member, wanted)| {
            let seen = inputs.previous.get(member.name.as_str());
            MemberClients {
                name: member.name.clone(),
                remote: !member.is_local(),
                running: seen.and_then(|m| m.validator_client),
                wanted: *wanted,
                recorded: seen
                    .and_then(|m| m.client_move.as_ref())
                    .map(|r| RecordedMove {
                        from: r.from,
                        to: r.to,
                        finished: r.phase == ClientMovePhase::Moved,
                        failed: r.phase == ClientMovePhase::Failed,
                    }),
                moved_by_hand: history_moved_by_hand(inputs.dv, member, *wanted),
            }
        })
        .collect();
    client_moves::choose(
        &known,
        threshold,
        spec.client_diversity.policy == Policy::Required,
    )
}

/// The DV's annotation says this member's history was moved to `client` by hand.
fn history_moved_by_hand(
    dv: &DistributedValidator,
    member: &MemberSpec,
    client: Option<ValidatorClient>,
) -> bool {
    let key = format!(
        "{ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX}{}",
        member.name
    );
    client.is_some_and(|client| {
        dv.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&key))
            .is_some_and(|v| v == client.as_str())
    })
}

impl Settled {
    fn add(
        &mut self,
        inputs: &MemberInputs,
        member: &MemberSpec,
        choice: Choice,
        zone: Option<String>,
    ) {
        let Some((client, migration)) = self.client_of(inputs, member, choice) else {
            // Run by another organisation: it counts for quorum and diversity, nothing is built.
            self.roster
                .push(roster_entry(member, member.validator_client, true));
            return;
        };
        self.roster.push(roster_entry(member, Some(client), false));
        match buildable(inputs, member) {
            Ok(secrets) => self
                .members
                .push(resolve(inputs, member, client, migration, zone, secrets)),
            Err(problem) if problem.kind == ProblemKind::ShareMismatch => {
                self.share_mismatches.push(problem)
            }
            Err(problem) => self.blocked.push(problem),
        }
    }

    /// The client a local member runs and the move it makes, noting a held change; `None` for
    /// a remote member.
    fn client_of(
        &mut self,
        inputs: &MemberInputs,
        member: &MemberSpec,
        choice: Choice,
    ) -> Option<(ValidatorClient, Option<Migration>)> {
        match choice {
            Choice::Remote => None,
            Choice::Run(client) => Some((client, None)),
            Choice::Move { from, to } => Some(moving(inputs, member, from, to)),
            Choice::Hold {
                running,
                wanted,
                why,
            } => {
                self.client_changes_held.push(ClientChangeHeld {
                    member: member.name.clone(),
                    running,
                    wanted,
                    why: why.clone(),
                });
                Some(match why {
                    // The unfinished move goes on, steps and all.
                    HoldReason::MoveUnfinished { from, to } => moving(inputs, member, from, to),
                    _ => (running, None),
                })
            }
        }
    }
}

fn roster_entry(member: &MemberSpec, client: Option<ValidatorClient>, remote: bool) -> RosterEntry {
    RosterEntry {
        name: member.name.clone(),
        index: member.index,
        operator_name: member.operator.name.clone(),
        operator_class: member.operator.class,
        client,
        remote,
    }
}

/// A move from `from` to `to`, with the image the old client ran: the one the move recorded,
/// else the DV's image for that client (a member's own image override names its new client's).
fn moving(
    inputs: &MemberInputs,
    member: &MemberSpec,
    from: ValidatorClient,
    to: ValidatorClient,
) -> (ValidatorClient, Option<Migration>) {
    let recorded = inputs
        .previous
        .get(member.name.as_str())
        .and_then(|m| m.client_move.as_ref())
        .filter(|r| r.from == from && r.to == to)
        .map(|r| r.from_image.clone());
    let from_image =
        recorded.unwrap_or_else(|| dv_client_image(&inputs.dv.spec.validator_clients.images, from));
    (
        to,
        Some(Migration {
            from,
            to,
            from_image,
        }),
    )
}

/// The member's two Secrets, when both exist and its keystores hold its own share of every
/// validator; else what stops it.
fn buildable<'m>(
    inputs: &MemberInputs,
    member: &'m MemberSpec,
) -> Result<(&'m SecretRef, &'m EnrSecretRef), MemberProblem> {
    // The spec checks require both of a local member; a spec that slipped past them blocks
    // only this member.
    let (Some(key_share_secret), Some(enr_secret)) = (&member.key_share_secret, &member.enr_secret)
    else {
        return Err(MemberProblem {
            member: member.name.clone(),
            kind: ProblemKind::SecretsMissing(Vec::new()),
            why: format!(
                "member {} names no keyShareSecret or enrSecret",
                member.name
            ),
        });
    };
    missing_secrets(
        inputs.facts,
        member,
        [
            ("key-share", &key_share_secret.name),
            ("ENR", &enr_secret.name),
        ],
    )?;
    share_mismatch(inputs, member, &key_share_secret.name)?;
    Ok((key_share_secret, enr_secret))
}

fn missing_secrets(
    facts: &Facts,
    member: &MemberSpec,
    secrets: [(&str, &String); 2],
) -> Result<(), MemberProblem> {
    let missing: Vec<(&str, &String)> = secrets
        .into_iter()
        .filter(|(_, secret)| !facts.secrets.contains_key(*secret))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let why: Vec<String> = missing
        .iter()
        .map(|(what, secret)| {
            format!(
                "{what} Secret {secret:?} of member {} does not exist",
                member.name
            )
        })
        .collect();
    Err(MemberProblem {
        member: member.name.clone(),
        kind: ProblemKind::SecretsMissing(
            missing
                .iter()
                .map(|(_, secret)| (*secret).clone())
                .collect(),
        ),
        why: why.join("; "),
    })
}

/// The member's keystores must hold its own share of every validator: someone else's share
/// would make two signers of one share.
fn share_mismatch(
    inputs: &MemberInputs,
    member: &MemberSpec,
    secret: &str,
) -> Result<(), MemberProblem> {
    let problems = match inputs.facts.keystores.get(secret) {
        Some(Ok(keys)) => crate::crypto::keystore::check_member(
            &member.name,
            member.index as usize,
            secret,
            keys,
            inputs.lock.summary,
            &inputs.names_by_index,
        ),
        Some(Err(why)) => vec![format!("member {}: Secret {secret:?}: {why}", member.name)],
        None => vec![format!(
            "member {}: the keystores of Secret {secret:?} were not read",
            member.name
        )],
    };
    if problems.is_empty() {
        return Ok(());
    }
    Err(MemberProblem {
        member: member.name.clone(),
        kind: ProblemKind::ShareMismatch,
        why: problems.join("; "),
    })
}

/// A buildable member with every value the builders need resolved.
fn resolve(
    inputs: &MemberInputs,
    member: &MemberSpec,
    client: ValidatorClient,
    migration: Option<Migration>,
    zone: Option<String>,
    (key_share_secret, enr_secret): (&SecretRef, &EnrSecretRef),
) -> Member {
    let spec = &inputs.dv.spec;
    let overrides = member.images.clone().unwrap_or_default();
    let version = |secret: &str| {
        inputs
            .facts
            .secrets
            .get(secret)
            .map(|s| s.resource_version.clone())
            .unwrap_or_default()
    };
    Member {
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
        client_image: overrides
            .validator_client
            .clone()
            .unwrap_or_else(|| dv_client_image(&spec.validator_clients.images, client)),
        charon_resources: member.resources.as_ref().and_then(|r| r.charon.clone()),
        client_resources: member
            .resources
            .as_ref()
            .and_then(|r| r.validator_client.clone()),
        node_selector: member.node_selector.clone(),
        tolerations: member.tolerations.clone(),
        inputs_hash: stable_hash(&[
            &inputs.lock.read.text_hash,
            &key_share_secret.name,
            &version(&key_share_secret.name),
            &enr_secret.name,
            &version(&enr_secret.name),
        ]),
        p2p_port: p2p_port(inputs, member),
        external_address: member.external_address.clone().or_else(|| {
            spec.p2p
                .as_ref()
                .and_then(|_| inputs.facts.p2p_addresses.get(&member.name).cloned())
        }),
        restart_requested_at: restart_requested_at(inputs.restarts, &member.name),
        migration,
        history_moved_by_hand: history_moved_by_hand(inputs.dv, member, Some(client)),
    }
}

/// The port Charon listens on for p2p: the member's node port when published as a NodePort.
fn p2p_port(inputs: &MemberInputs, member: &MemberSpec) -> i32 {
    let node_ports = inputs
        .dv
        .spec
        .p2p
        .as_ref()
        .is_some_and(|p| p.service_type == ExposureType::NodePort);
    member
        .node_port
        .filter(|_| node_ports)
        .map_or(PORT_P2P, i32::from)
}

/// The latest restart asked of this member or of every member. RFC 3339 UTC times of one format
/// compare as text.
fn restart_requested_at(
    restarts: &BTreeMap<Option<String>, String>,
    member: &str,
) -> Option<String> {
    [restarts.get(&None), restarts.get(&Some(member.to_owned()))]
        .into_iter()
        .flatten()
        .max()
        .cloned()
}
