//! Every reason the operator writes, defined once: the `reason` of the DV's conditions and of its
//! Events (CamelCase, as Kubernetes expects). Alerts, the plugin, the demo and the tests match on
//! these, so a name changes here or nowhere.

// Available
pub const ALL_MEMBERS_READY: &str = "AllMembersReady";
pub const MEMBERS_NOT_READY: &str = "MembersNotReady";

// Available=False and an Event: a spec the operator cannot build (nothing is changed).
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const LOCK_UNAVAILABLE: &str = "LockUnavailable";
pub const LOCK_MISMATCH: &str = "LockMismatch";
pub const LOCK_INVALID: &str = "LockInvalid";
pub const PLACEMENT_UNSATISFIABLE: &str = "PlacementUnsatisfiable";
pub const STORAGE_CHANGE_REFUSED: &str = "StorageChangeRefused";
/// A restart annotation names no member or holds no time.
pub const INVALID_RESTART_REQUEST: &str = "InvalidRestartRequest";

// QuorumAvailable
pub const QUORUM_READY: &str = "QuorumReady";
pub const BELOW_THRESHOLD: &str = "BelowThreshold";

// FaultTolerant
pub const CAN_LOSE_MEMBERS: &str = "CanLoseMembers";
pub const NO_MARGIN_LEFT: &str = "NoMarginLeft";

// PlacementSatisfied
pub const NO_ZONES: &str = "NoZones";
pub const ZONES_SPREAD: &str = "ZonesSpread";
pub const ZONE_OVERLOADED: &str = "ZoneOverloaded";

// ClientDiversity, OperatorDiversity
pub const CLIENTS_SPREAD: &str = "ClientsSpread";
pub const CLIENT_CONCENTRATED: &str = "ClientConcentrated";
pub const OPERATORS_SPREAD: &str = "OperatorsSpread";
pub const OPERATOR_CONCENTRATED: &str = "OperatorConcentrated";

// KeySharesVerified (SecretMissing and ShareMismatch are Events too)
pub const SHARES_MATCH_LOCK: &str = "SharesMatchLock";
pub const SECRET_MISSING: &str = "SecretMissing";
pub const SHARE_MISMATCH: &str = "ShareMismatch";

// Progressing
/// Members run an older revision and the rollout proceeds.
pub const MEMBERS_OUTDATED: &str = "MembersOutdated";
/// Members run an older revision, and the quorum budget allows taking none down (ready members
/// at the threshold): the rollout waits for a member to come back.
pub const ROLLOUT_HELD_BY_BUDGET: &str = "RolloutHeldByBudget";
/// Members are not ready yet.
pub const MEMBERS_STARTING: &str = "MembersStarting";
/// Every member runs the desired revision and is ready.
pub const CONVERGED: &str = "Converged";
/// A member's client change is held: its slashing-protection history would be lost (also an
/// Event).
pub const CLIENT_CHANGE_HELD: &str = "ClientChangeHeld";

// ReconciliationPaused
pub const PAUSED: &str = "Paused";
pub const ACTIVE: &str = "Active";

// Events
/// Children created or updated by one apply pass.
pub const CREATED: &str = "Created";
pub const UPDATED: &str = "Updated";
/// A NetworkPolicy the operator made, removed when the DV opts out.
pub const DELETED: &str = "Deleted";
/// An outdated member (or one with a restart requested) restarted, within the budget.
pub const ROLLING_RESTART: &str = "RollingRestart";
/// A broken member replaced.
pub const REPAIRING: &str = "Repairing";
/// The pod of a member whose node is gone removed.
pub const FORCE_DELETED: &str = "ForceDeleted";
pub const RESTART_FAILED: &str = "RestartFailed";
/// A member's node is unreachable; its pod is left alone.
pub const MEMBER_STRANDED: &str = "MemberStranded";
pub const VOLUME_EXPANDING: &str = "VolumeExpanding";
pub const VOLUME_EXPANSION_FAILED: &str = "VolumeExpansionFailed";
pub const STATEFULSET_RECREATED: &str = "StatefulSetRecreated";
/// A child's field that the operator sets was changed by someone else and put back.
pub const DRIFT_CORRECTED: &str = "DriftCorrected";
