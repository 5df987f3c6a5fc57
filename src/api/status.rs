//! What the operator reports about a DistributedValidator: counts, phase, members, conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

use super::ValidatorClient;

/// Observed state of a DistributedValidator, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedValidatorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Members needed to sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Members that may be down while signing continues (members minus threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_tolerance: Option<u32>,
    /// Members whose pods are Ready.
    #[serde(default)]
    pub ready_members: u32,
    /// Ready members out of all members, e.g. `3/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Members the operator may still take down without breaking quorum (ready minus threshold;
    /// negative when quorum is lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<i32>,
    /// Overall state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Per-member state, sorted by share index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Conditions: Available, QuorumAvailable, FaultTolerant, PlacementSatisfied,
    /// ClientDiversity, OperatorDiversity, KeySharesVerified, Progressing, ReconciliationPaused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Overall state of a DistributedValidator.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Phase {
    /// Not yet created, or blocked by an invalid spec.
    Pending,
    /// Members are being created or updated.
    Progressing,
    /// Every member is Ready.
    Available,
    /// At least `threshold` but not all members are Ready: signing continues with less tolerance.
    Degraded,
    /// Fewer than `threshold` members are Ready: the cluster cannot sign.
    QuorumLost,
}

impl Phase {
    /// The phase as printed by `kubectl get dv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Available => "Available",
            Phase::Degraded => "Degraded",
            Phase::QuorumLost => "QuorumLost",
        }
    }
}

/// Observed state of one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member name.
    pub name: String,
    /// Share index in the lock.
    pub index: u32,
    /// Zone the member is assigned to. Sticky: it does not move when unrelated nodes change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Node the member's pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Validator client the member runs (pinned or assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_client: Option<ValidatorClient>,
    /// Whether the member's pod is Ready.
    #[serde(default)]
    pub ready: bool,
    /// Container restarts of the member's current pod.
    #[serde(default)]
    pub restarts: u32,
    /// Why the operator last restarted this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_reason: Option<String>,
    /// When the operator last restarted this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_time: Option<Time>,
    /// Whether the member's keystore public keys match the lock's public shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_public_key_verified: Option<bool>,
    /// The member runs an older configuration than the spec asks for and awaits a restart.
    #[serde(default)]
    pub outdated: bool,
    /// Operator restarts of this member in a row without it staying Ready in between; sets
    /// the backoff before the next one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_restarts: u32,
    /// The member's pod is on a node that stopped responding. It is left alone (a second pod
    /// would be a second signer with the same key share) until the node returns, is deleted,
    /// or is tainted `node.kubernetes.io/out-of-service`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stranded: bool,
    /// Run by another organisation: `ready` means a member here saw it answer lately.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// When the member was last seen answering (its own Charon read, or a peer's ping of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Why the member is not ready: a container that crash-loops or failed, with its exit
    /// code, reason and last log line (e.g. `charon: CrashLoopBackOff, exit 1 (Error): ...
    /// unknown flag: --x`), else what its Charon says (e.g. `beacon node syncing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// The member's latest change of validator client, which moved its slashing-protection
    /// history (EIP-3076 interchange) from the old client to the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_move: Option<ClientMove>,
}

/// A member's change of validator client. The old client exports its slashing-protection
/// history into `file` on the member's volume, the new client imports it, and only then starts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientMove {
    pub from: ValidatorClient,
    pub to: ValidatorClient,
    /// The old client's image the export runs in.
    pub from_image: String,
    pub phase: ClientMovePhase,
    /// The interchange file on the member's validator-client volume (kept: never deleted).
    pub file: String,
    /// SHA-256 of the interchange file, as the export step reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Validators the interchange file holds history for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<u32>,
    /// Why the move failed: the failing step and the end of its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// Where a client change stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ClientMovePhase {
    /// Waiting for the member's restart, or exporting and importing.
    Moving,
    /// The export or the import failed: the member is stopped, its old client's data untouched.
    Failed,
    /// The new client runs with the imported history.
    Moved,
}

impl ClientMovePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMovePhase::Moving => "Moving",
            ClientMovePhase::Failed => "Failed",
            ClientMovePhase::Moved => "Moved",
        }
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Condition types, defined once.
pub mod condition_types {
    pub const AVAILABLE: &str = "Available";
    pub const QUORUM_AVAILABLE: &str = "QuorumAvailable";
    pub const FAULT_TOLERANT: &str = "FaultTolerant";
    pub const PLACEMENT_SATISFIED: &str = "PlacementSatisfied";
    pub const CLIENT_DIVERSITY: &str = "ClientDiversity";
    pub const OPERATOR_DIVERSITY: &str = "OperatorDiversity";
    pub const KEY_SHARES_VERIFIED: &str = "KeySharesVerified";
    pub const PROGRESSING: &str = "Progressing";
    pub const RECONCILIATION_PAUSED: &str = "ReconciliationPaused";
    /// Only for DVs with remote members: every member is seen answering from here.
    pub const PEERS_CONNECTED: &str = "PeersConnected";
    /// Only while some member has changed validator client: True once every change finished
    /// with the history imported.
    pub const CLIENT_MOVED: &str = "ClientMoved";
}

impl MemberStatus {
    /// The member's client as printed, or `-` when not yet assigned.
    pub fn client_name(&self) -> &'static str {
        self.validator_client.map_or("-", ValidatorClient::as_str)
    }
}
