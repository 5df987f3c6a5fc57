//! What the validate step reads and produces: the [`Facts`] dereferencing found, the validated
//! [`Cluster`] (with its [`Member`]s and the typed problems of the members it cannot build),
//! and the annotations a user asks restarts and client changes with. Pure data and rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};

use crate::api::{LogLevel, MemberSpec, Network, OperatorClass, StorageSpec, ValidatorClient};
use crate::crypto::lock::LockSummary;
use crate::domain::quorum::Quorum;

/// What dereferencing found: the lock and the Secrets that exist (by name, with their
/// resourceVersion; never their data).
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The lock document as read, or why it could not be read (missing ConfigMap, missing key).
    pub lock: Result<std::sync::Arc<ReadLock>, String>,
    pub secrets: BTreeMap<String, SecretFacts>,
    /// Public keys of each key-share Secret's keystores (by Secret name, then validator), or why
    /// they could not be read.
    pub keystores: BTreeMap<String, Result<BTreeMap<usize, String>, String>>,
    /// Nodes per zone (by the DV's zone label, within its allowed zones). Every labelled node
    /// counts, healthy or not: a zone that is down is still the zone its members' data is in.
    pub zones: crate::domain::placement::Zones,
    /// The claim templates of each member's live StatefulSet (by member name): what
    /// `spec.storage` is compared with, since a StatefulSet's claims cannot change.
    pub live_claims: BTreeMap<String, Vec<crate::controller::storage::LiveClaim>>,
    /// The address each member's p2p LoadBalancer got (by member name), when it has one.
    pub p2p_addresses: BTreeMap<String, String>,
    /// What the members' Charon said of themselves and their peers (the peer monitor's view).
    pub peers: crate::domain::peers::PeerHealth,
}

/// A lock document as the controller keeps it: what it says (or why it does not parse) and what
/// `lock::verify` found in it. Not its text: a lock is kilobytes of JSON (signatures, ENRs,
/// deposit data) of which validation reads a few keys, and a thousand DVs' locks kept as text
/// were the biggest part of the operator's memory. Parsed and verified once per version of the
/// ConfigMap or Secret that holds it, not on every reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadLock {
    /// What the lock says, or why it does not parse.
    pub summary: Result<LockSummary, String>,
    /// What `lock::verify` says about it (nothing when it does not parse).
    pub problems: Vec<crate::crypto::lock::LockProblem>,
    /// [`stable_hash`] of its text: part of each member's inputs hash, so that a changed lock
    /// restarts the members that mount it.
    pub text_hash: String,
}

impl ReadLock {
    /// Parses and verifies a lock document.
    pub fn from_text(text: &str) -> ReadLock {
        ReadLock::from_text_with(text, crate::crypto::lock::verify)
    }

    /// Parses a lock document, verifying it with `verify` (which may remember earlier answers).
    pub fn from_text_with(
        text: &str,
        verify: impl FnOnce(&LockSummary) -> Vec<crate::crypto::lock::LockProblem>,
    ) -> ReadLock {
        let summary = crate::crypto::lock::summarize(text).map_err(|e| e.to_string());
        let problems = summary.as_ref().map(verify).unwrap_or_default();
        ReadLock {
            summary,
            problems,
            text_hash: stable_hash(&[text]),
        }
    }
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
    /// The port Charon listens on for p2p: 3610, or the member's node port when published as
    /// a NodePort (Charon advertises the port it listens on).
    pub p2p_port: i32,
    /// The address Charon advertises to peers: the spec's `externalAddress`, else the
    /// LoadBalancer's; `None`: the member's in-cluster DNS name.
    pub external_address: Option<String>,
    /// The member changes validator client (or has, and keeps the steps): its
    /// slashing-protection history moves from the old client to `client` before it starts.
    pub migration: Option<Migration>,
    /// The DV's annotation says this member's history was moved to its client by hand: the
    /// check step takes that word for it.
    pub history_moved_by_hand: bool,
}

/// A member's change of validator client, with the image the old client ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub from: ValidatorClient,
    pub to: ValidatorClient,
    pub from_image: String,
}

/// DV annotation saying one member's slashing-protection history (EIP-3076 interchange) was
/// moved to a client by hand: `slashing-protection.dvt.io/<member>: <client>`. A change to that
/// client then moves nothing, and the member's check step passes.
pub const ANNOTATION_SLASHING_PROTECTION_MOVED_PREFIX: &str = "slashing-protection.dvt.io/";

/// A member whose validator client change waits, kept on the client it runs (see
/// [`crate::domain::client_moves`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientChangeHeld {
    pub member: String,
    pub running: ValidatorClient,
    pub wanted: ValidatorClient,
    pub why: crate::domain::client_moves::HoldReason,
}

impl ClientChangeHeld {
    pub fn message(&self) -> String {
        use crate::domain::client_moves::HoldReason;
        let (member, running, wanted) = (&self.member, self.running.as_str(), self.wanted.as_str());
        match &self.why {
            HoldReason::AnotherMoves(other) => format!(
                "member {member} runs {running} and the spec asks for {wanted}: held on {running}: member {other} changes client first (one member moves its slashing-protection history at a time)"
            ),
            HoldReason::Diversity {
                client,
                count,
                threshold,
            } => format!(
                "member {member} runs {running} and the spec asks for {wanted}: held on {running}: after the change {count} members would run {client} (threshold {threshold}), which spec.clientDiversity.policy Required refuses; pin the members so that every step keeps each client below {threshold}, or set the policy to Preferred for the change"
            ),
            HoldReason::MoveUnfinished { from, to } => format!(
                "member {member} is moving from {from} to {to} and the spec now asks for {wanted}: the move finishes first, since {to} may already have signed and starting {wanted} from {from}'s history would forget it (going back to {from} is allowed once the move has failed: {to} then never started)",
                from = from.as_str(),
                to = to.as_str(),
            ),
        }
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
    pub kind: ProblemKind,
    /// The problem in words, for conditions and Events.
    pub why: String,
}

/// What stops a member.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// These Secrets of the member (its key share, its ENR) do not exist.
    SecretsMissing(Vec<String>),
    /// The member's keystores do not hold its own share of the lock (or cannot be read).
    ShareMismatch,
}

/// One member of the spec as validation settled it, built or blocked: whose it is and which
/// client it runs (or will run once it can be built). Status and the diversity conditions count
/// over these, so that a blocked member counts the same for clients as for operators.
#[derive(Clone, Debug, PartialEq)]
pub struct RosterEntry {
    pub name: String,
    pub index: u32,
    pub operator_name: String,
    pub operator_class: OperatorClass,
    /// The client it runs; for a remote member, only the one its spec pins.
    pub client: Option<ValidatorClient>,
    /// Run by another organisation: nothing is built for it here.
    pub remote: bool,
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
    /// The Secret key whose value is Charon's `--beacon-node-headers` (passed by reference: the
    /// operator never reads it).
    pub beacon_headers_secret: Option<crate::api::SecretKeyRef>,
    /// Test-network mode: Charon's mock beacon node and validator mock, with this slot length.
    pub test_network: Option<crate::api::TestNetworkSpec>,
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
    pub zones: crate::domain::placement::Zones,
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
    /// Every member of the spec, built or not, by share index.
    pub roster: Vec<RosterEntry>,
    /// How restarts and rollouts are paced, with the pause annotation folded in. Its threshold
    /// is what the members run here must keep ready: `t` less the remote members up.
    pub rollout: crate::domain::planner::Settings,
    /// What the members' Charon said of themselves and their peers.
    pub peers: crate::domain::peers::PeerHealth,
    /// Remote members seen answering lately: they count toward quorum with the ready members
    /// run here.
    pub remote_up: u32,
    /// How the members' p2p port is published outside the cluster, if it is.
    pub p2p: Option<crate::api::P2pExposure>,
}

/// Why a DV as a whole cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub refusal: Refusal,
    /// Every problem, sorted, one line each.
    pub problems: Vec<String>,
}

impl Invalid {
    pub fn new(refusal: Refusal, problems: Vec<String>) -> Invalid {
        Invalid { refusal, problems }
    }

    /// One problem of one kind.
    pub fn one(refusal: Refusal, problem: impl Into<String>) -> Invalid {
        Invalid::new(refusal, vec![problem.into()])
    }

    /// The Ready condition's reason and the Event's.
    pub fn reason(&self) -> &'static str {
        self.refusal.reason()
    }

    pub fn message(&self) -> String {
        self.problems.join("; ")
    }
}

/// The kinds of problem that stop a whole DV, one condition reason each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The spec breaks a rule of its own (or a restart annotation does).
    InvalidSpec,
    InvalidRestartRequest,
    /// `spec.storage` asks for what a live claim cannot become (a smaller size, another class).
    StorageChangeRefused,
    /// The lock cannot be read or parsed.
    LockUnavailable,
    /// The lock disagrees with the spec (operators, threshold, network mode).
    LockMismatch,
    /// The lock is not sound: shares that do not belong to its keys, a fee recipient missing.
    LockInvalid,
    /// Under the Required placement policy, the zones cannot keep quorum through an outage.
    PlacementUnsatisfiable,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        use crate::api::reasons;
        match self {
            Refusal::InvalidSpec => reasons::INVALID_SPEC,
            Refusal::InvalidRestartRequest => reasons::INVALID_RESTART_REQUEST,
            Refusal::StorageChangeRefused => reasons::STORAGE_CHANGE_REFUSED,
            Refusal::LockUnavailable => reasons::LOCK_UNAVAILABLE,
            Refusal::LockMismatch => reasons::LOCK_MISMATCH,
            Refusal::LockInvalid => reasons::LOCK_INVALID,
            Refusal::PlacementUnsatisfiable => reasons::PLACEMENT_UNSATISFIABLE,
        }
    }
}

/// FNV-1a, hex: stable across processes and versions (unlike `DefaultHasher`), for hashes
/// stored on objects. Each part is followed by a zero byte.
pub fn stable_hash(parts: &[&str]) -> String {
    let mut hash = Fnv1a::new();
    for part in parts {
        hash.feed(part.as_bytes());
        hash.feed(&[0]);
    }
    hash.hex()
}

/// [`stable_hash`] of a value's JSON text, fed to the hash as it is encoded rather than built
/// as a string first: every reconcile stamps every child it builds, and a member's
/// StatefulSet encodes to several kilobytes.
pub fn stable_hash_of<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut hash = Fnv1a::new();
    serde_json::to_writer(&mut hash, value)?;
    hash.feed(&[0]);
    Ok(hash.hex())
}

/// A 64-bit FNV-1a fingerprint of values' `Debug` forms, each followed by a zero byte (which
/// `Debug` escapes inside strings, so the parts cannot run into each other). For values kept
/// only in this process's memory, never on objects: `Debug` is complete for derived impls but
/// may change between Rust versions.
pub fn debug_fingerprint(parts: &[&dyn std::fmt::Debug]) -> u64 {
    use std::fmt::Write as _;
    let mut hash = Fnv1a::new();
    for part in parts {
        // Writing into the hash cannot fail; a `Debug` impl that fails only shortens the input.
        let _ = write!(hash, "{part:?}");
        hash.feed(&[0]);
    }
    hash.0
}

/// The 64-bit FNV-1a state.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl std::fmt::Write for Fnv1a {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.feed(text.as_bytes());
        Ok(())
    }
}

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.feed(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Clients for members that do not pin one: each goes to the allowed client with the fewest
/// members so far (pinned members count), ties broken by the order of the allowed list. A
/// remote member that pins none gets none: another organisation chooses it, and nobody here
/// knows it.
pub fn assign_clients(
    members: &[MemberSpec],
    allowed: &[ValidatorClient],
) -> Vec<Option<ValidatorClient>> {
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
        if assigned[i].is_some() || members[i].remote {
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
}
