//! The policies of the spec: placement over zones, client and operator diversity, rollout
//! pacing and storage, each with the defaults a DV gets when it names none.

use super::*;

/// Whether a diversity rule blocks the DV or is only reported.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, schemars::JsonSchema,
)]
pub enum Policy {
    /// A DV that breaks the rule is not created; the condition says why.
    #[default]
    Required,
    /// A DV that breaks the rule is created; the condition says how exposed it is.
    Preferred,
}

/// How members are spread across failure domains.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Node label that names a node's zone.
    #[serde(default = "default_zone_label")]
    #[schemars(length(min = 1, max = 317))]
    pub zone_label: String,
    /// Zones members may run in. Empty means every zone that has schedulable nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub zones: Vec<String>,
    /// `Required`: no zone may hold more than n - threshold members (one zone outage never stops
    /// signing), or the DV is not created. `Preferred`: spread as well as the zones allow and
    /// report the exposure.
    #[serde(default = "placement_default_policy")]
    pub policy: Policy,
}

impl Default for PlacementSpec {
    fn default() -> Self {
        Self {
            zone_label: default_zone_label(),
            zones: Vec::new(),
            policy: placement_default_policy(),
        }
    }
}

pub(super) fn default_zone_label() -> String {
    DEFAULT_ZONE_LABEL.to_owned()
}

/// Zone spread is a liveness matter (an outage stops signing, it cannot cause a slashing), so a
/// cluster with too few zones is still run and reported rather than refused.
pub(super) fn placement_default_policy() -> Policy {
    Policy::Preferred
}

/// How members are spread across validator-client implementations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientDiversitySpec {
    /// Validator clients the operator may assign to members without a pinned client.
    #[serde(default = "default_clients")]
    #[schemars(length(min = 1, max = 5))]
    pub clients: Vec<ValidatorClient>,
    /// `Required`: no client may run `threshold` or more members (one client bug could sign
    /// something slashable), or the DV is not created. `Preferred`: report it only.
    #[serde(default)]
    pub policy: Policy,
}

impl Default for ClientDiversitySpec {
    fn default() -> Self {
        Self {
            clients: default_clients(),
            policy: Policy::Required,
        }
    }
}

pub(super) fn default_clients() -> Vec<ValidatorClient> {
    ValidatorClient::ALL.to_vec()
}

/// How strictly members must be spread across operator entities and classes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorDiversitySpec {
    /// `Required`: no operator name and no operator class may hold `threshold` or more members,
    /// or the DV is not created. `Preferred`: allowed and reported, for one entity running a
    /// whole cluster for high availability.
    #[serde(default)]
    pub policy: Policy,
}

/// How the operator restarts and updates members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Most members the operator takes down at once for an update. Always capped by the quorum
    /// budget (ready members minus threshold).
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 31))]
    pub max_unavailable: u32,
    /// Seconds a restarted member must stay Ready before the next one is touched.
    #[serde(default = "default_min_ready_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub min_ready_seconds: u32,
    /// Seconds a member may be not live before the operator counts it as broken and restarts it.
    #[serde(default = "default_restart_delay_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub restart_delay_seconds: u32,
    /// First wait between restarts of the same broken member; doubles after each restart.
    #[serde(default = "default_restart_backoff_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub restart_backoff_seconds: u32,
    /// Longest wait between restarts of the same broken member.
    #[serde(default = "default_max_restart_backoff_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_restart_backoff_seconds: u32,
    /// Stop every disruptive action (restarts, rollouts) on this DV.
    #[serde(default)]
    pub paused: bool,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
            min_ready_seconds: default_min_ready_seconds(),
            restart_delay_seconds: default_restart_delay_seconds(),
            restart_backoff_seconds: default_restart_backoff_seconds(),
            max_restart_backoff_seconds: default_max_restart_backoff_seconds(),
            paused: false,
        }
    }
}

pub(super) fn default_max_unavailable() -> u32 {
    1
}

pub(super) fn default_min_ready_seconds() -> u32 {
    30
}

pub(super) fn default_restart_delay_seconds() -> u32 {
    120
}

pub(super) fn default_restart_backoff_seconds() -> u32 {
    30
}

pub(super) fn default_max_restart_backoff_seconds() -> u32 {
    900
}

/// Persistent storage of a member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// StorageClass of the member volumes. Unset uses the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Size of the Charon data volume.
    #[serde(default = "default_charon_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub charon_size: String,
    /// Size of the validator-client data volume (keys and slashing protection).
    #[serde(default = "default_validator_client_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub validator_client_size: String,
    /// Keep the volumes when the DV or a member is deleted. Slashing-protection data lives on
    /// them, so the operator never deletes them; set false only for throw-away test networks.
    #[serde(default = "default_retain")]
    pub retain_on_delete: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            charon_size: default_charon_size(),
            validator_client_size: default_validator_client_size(),
            retain_on_delete: default_retain(),
        }
    }
}

pub(super) fn default_charon_size() -> String {
    "1Gi".to_owned()
}

pub(super) fn default_validator_client_size() -> String {
    "5Gi".to_owned()
}

pub(super) fn default_retain() -> bool {
    true
}
