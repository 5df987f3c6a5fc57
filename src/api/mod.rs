//! The `DistributedValidator` custom resource (`dvt.io/v1alpha1`): its spec, status and defaults.
//!
//! Doc comments on every field become `kubectl explain` text, so they are written for the person
//! applying the resource. Rules a schema can express (enums, bounds, patterns, CEL) live here as
//! attributes; everything else is checked by [`crate::domain::spec_checks`].

mod members;
mod policies;

pub use members::*;
pub use policies::*;

mod fixtures;

mod status;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub mod reasons;

pub use status::{
    ClientMove, ClientMovePhase, DistributedValidatorStatus, MemberStatus, Phase, condition_types,
};

/// API group of every resource this operator serves.
pub const GROUP: &str = "dvt.io";

/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Default label key that carries a Node's failure domain.
pub const DEFAULT_ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Default key of the cluster lock inside its ConfigMap or Secret.
pub const DEFAULT_LOCK_KEY: &str = "cluster-lock.json";

/// Default key of the Charon ENR private key inside its Secret.
pub const DEFAULT_ENR_KEY: &str = "charon-enr-private-key";

/// Charon image used when the spec does not name one.
pub const DEFAULT_CHARON_IMAGE: &str = "obolnetwork/charon:v1.10.3";

/// Obol's public relays, used when the spec does not list its own.
pub const DEFAULT_RELAYS: [&str; 2] = ["https://0.relay.obol.tech", "https://1.relay.obol.tech"];

/// A Distributed Validator cluster: one cluster lock, `n` members each holding one key share,
/// any `threshold` of which can sign. The operator runs one StatefulSet per member.
// Each printer column repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dvt.io",
    version = "v1alpha1",
    kind = "DistributedValidator",
    plural = "distributedvalidators",
    shortname = "dv",
    category = "dvt",
    namespaced,
    status = "DistributedValidatorStatus",
    derive = "PartialEq",
    doc = "A Distributed Validator cluster: one cluster lock, n members each holding one key share, any `threshold` of which can sign.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Ready members out of all members"
    ),
    printcolumn(
        name = "Threshold",
        type_ = "integer",
        json_path = ".status.threshold",
        description = "Members needed to sign"
    ),
    printcolumn(
        name = "Tolerance",
        type_ = "integer",
        json_path = ".status.faultTolerance",
        description = "Members that may be down while signing continues"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Progressing, Available, Degraded or QuorumLost"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.members.all(m, self.members.exists_one(o, o.name == m.name))").message("member names must be unique").field_path(".members"),
    validation = Rule::new("self.members.all(m, self.members.exists_one(o, o.index == m.index))").message("member share indexes must be unique").field_path(".members"),
    validation = Rule::new("self.members.all(m, m.index < size(self.members))").message("every share index must be below the number of members").field_path(".members"),
    validation = Rule::new("self.members.all(m, !has(m.keyShareSecret) || self.members.exists_one(o, has(o.keyShareSecret) && o.keyShareSecret.name == m.keyShareSecret.name))").message("each member needs its own key-share Secret").field_path(".members"),
    validation = Rule::new("self.members.exists(m, !has(m.remote) || !m.remote)").message("at least one member must run in this cluster (remote: false)").field_path(".members"),
    validation = Rule::new("!has(self.threshold) || (self.threshold * 2 > size(self.members) && self.threshold <= size(self.members))").message("threshold must be more than half of the members and at most all of them").field_path(".threshold"),
    validation = Rule::new("oldSelf.members.all(o, self.members.all(m, m.name != o.name || m.index == o.index))").message("the share index of an existing member cannot change; remove the member and add a new one").field_path(".members"),
)]
pub struct DistributedValidatorSpec {
    /// Ethereum network the validators attest on.
    pub network: Network,

    /// Distributed-validator middleware. Only `charon` is implemented; `ssv` is reserved.
    #[serde(default)]
    pub middleware: Middleware,

    /// Where the cluster lock (`cluster-lock.json` from the DKG) is stored. The lock fixes the
    /// operators, the threshold and every validator's public key shares.
    pub cluster_lock: ClusterLockSource,

    /// Members needed to sign. Defaults to ceil(2n/3) (3 of 4, 5 of 7) and must equal the lock's
    /// threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 32))]
    pub threshold: Option<u32>,

    /// Beacon node endpoints every member's Charon talks to. Required unless `testNetwork` is
    /// set (a test network's beacon node is Charon's own mock).
    // An Option, not a defaulted struct: a CRD's default must pass its own schema, and an empty
    // endpoint list does not (the real apiserver refuses such a CRD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon_nodes: Option<BeaconNodes>,

    /// Test-network mode, for trying the operator on kind or a local cluster without a beacon
    /// node: every member's Charon runs its mock beacon node (`--simnet-beacon-mock`) and its
    /// validator mock (`--simnet-validator-mock`), which signs with that member's own key
    /// shares. Refused for mainnet (the DV's network or the lock's fork version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_network: Option<TestNetworkSpec>,

    /// Settings of the Charon middleware container.
    #[serde(default)]
    pub charon: CharonSpec,

    /// Defaults for the validator-client containers.
    #[serde(default)]
    pub validator_clients: ValidatorClientsSpec,

    /// The members of the cluster, one per key share. Between 3 and 32.
    #[schemars(length(min = 3, max = 32))]
    pub members: Vec<MemberSpec>,

    /// How members are spread across failure domains (zones).
    #[serde(default)]
    pub placement: PlacementSpec,

    /// How members are spread across validator-client implementations.
    #[serde(default)]
    pub client_diversity: ClientDiversitySpec,

    /// How strictly members must be spread across operator entities and classes.
    #[serde(default)]
    pub operator_diversity: OperatorDiversitySpec,

    /// How the operator restarts and updates members without breaking quorum.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// Persistent storage for Charon and validator-client data (slashing protection lives here).
    #[serde(default)]
    pub storage: StorageSpec,

    /// The NetworkPolicy that isolates the members' pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// How peers outside this cluster (other organisations' members) reach the members run here
    /// directly. Unset: only through Charon's relays, which needs no inbound port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p: Option<P2pExposure>,
}

/// A per-member Service that publishes Charon's p2p port (TCP) for peers in other organisations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct P2pExposure {
    /// `LoadBalancer` (Charon advertises the address the Service gets, or the member's
    /// `externalAddress`) or `NodePort` (each member names its `nodePort` and `externalAddress`).
    #[serde(rename = "type")]
    pub service_type: ExposureType,
    /// CIDRs allowed to reach the p2p port from outside (the NetworkPolicy's ingress and the
    /// LoadBalancer's source ranges). Empty: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub source_ranges: Vec<String>,
}

/// The Service type that publishes a member's p2p port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ExposureType {
    LoadBalancer,
    NodePort,
}

/// Ingress rules for the members' pods: p2p only from members of the same DV (and relays),
/// metrics only from the listed namespaces. Egress (beacon nodes, relays) is not restricted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy. Turn off only when the cluster's own policies cover the members.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// CIDRs of relays (or other peers outside the cluster) allowed to reach the p2p port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub relay_cidrs: Vec<String>,
    /// Namespaces allowed to scrape the members' metrics (e.g. `monitoring`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub metrics_namespaces: Vec<String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            relay_cidrs: Vec::new(),
            metrics_namespaces: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// Ethereum network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Hoodi,
    Sepolia,
    Holesky,
}

impl Network {
    /// The name Charon and the validator clients use for this network.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Hoodi => "hoodi",
            Network::Sepolia => "sepolia",
            Network::Holesky => "holesky",
        }
    }
}

/// Distributed-validator middleware.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Middleware {
    #[default]
    Charon,
    Ssv,
}

/// Where the cluster lock is stored: exactly one of a ConfigMap key or a Secret key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.secret)").message("set exactly one of configMap or secret"))]
pub struct ClusterLockSource {
    /// A ConfigMap in the DV's namespace holding the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<LockKeyRef>,
    /// A Secret in the DV's namespace holding the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<LockKeyRef>,
}

/// A key of a ConfigMap or Secret in the DV's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockKeyRef {
    /// Name of the ConfigMap or Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key holding the lock JSON. Defaults to `cluster-lock.json`.
    #[serde(default = "default_lock_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_lock_key() -> String {
    DEFAULT_LOCK_KEY.to_owned()
}

/// Test-network mode: Charon's own mocks stand in for the beacon node and the validator client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestNetworkSpec {
    /// Slot duration of the mock beacon node, in seconds (`--simnet-slot-duration`; Charon's
    /// default is 1). Ethereum's is 12.
    #[serde(default = "default_slot_seconds")]
    #[schemars(range(min = 1, max = 12))]
    pub slot_seconds: u32,
}

fn default_slot_seconds() -> u32 {
    1
}

/// Beacon node endpoints, in order of preference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BeaconNodes {
    /// HTTP(S) endpoints of beacon nodes. The first is the primary; the rest are fallbacks used
    /// when it fails.
    #[schemars(
        length(min = 1, max = 8),
        inner(length(max = 2048), regex(pattern = r"^https?://[^\s,]+$"))
    )]
    pub endpoints: Vec<String>,
    /// A Secret key whose value is Charon's `--beacon-node-headers` (comma-separated
    /// `header=value` pairs, e.g. an API token). Passed to Charon as an environment variable;
    /// the operator never reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret: Option<SecretKeyRef>,
}

/// A key of a Secret in the DV's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Settings of the Charon middleware container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CharonSpec {
    /// Charon container image. Defaults to the version this operator release was tested with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Charon log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Relay URLs Charon uses to find its peers. Empty means Obol's public relays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 2048), regex(pattern = r"^(https?://|/)[^\s,]+$"))
    )]
    pub relays: Vec<String>,
    /// Enable the builder API (MEV-boost) in Charon and in every validator client.
    #[serde(default)]
    pub builder_api: bool,
    /// Extra command-line arguments appended to `charon run`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub extra_args: Vec<String>,
    /// Extra environment variables for the Charon container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub extra_env: Vec<EnvVar>,
}

/// An environment variable with a literal value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    )]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// Charon log level.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// Defaults shared by every member's validator-client container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorClientsSpec {
    /// Container image per validator client. A client left out uses the image this operator
    /// release was tested with.
    #[serde(default)]
    pub images: ClientImages,
    /// Extra command-line arguments appended to every validator client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub extra_args: Vec<String>,
    /// Extra environment variables for every validator-client container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub extra_env: Vec<EnvVar>,
}

/// Container image per validator client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientImages {
    /// Lighthouse image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub lighthouse: Option<String>,
    /// Teku image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub teku: Option<String>,
    /// Prysm validator image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub prysm: Option<String>,
    /// Nimbus validator-client image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub nimbus: Option<String>,
    /// Lodestar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub lodestar: Option<String>,
}

/// A validator-client implementation that supports Charon's distributed mode.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ValidatorClient {
    Lighthouse,
    Teku,
    Prysm,
    Nimbus,
    Lodestar,
}

impl ValidatorClient {
    /// Every supported client, in the order used when assigning clients to members.
    pub const ALL: [ValidatorClient; 5] = [
        ValidatorClient::Lighthouse,
        ValidatorClient::Teku,
        ValidatorClient::Prysm,
        ValidatorClient::Nimbus,
        ValidatorClient::Lodestar,
    ];

    /// The client's name as written in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidatorClient::Lighthouse => "lighthouse",
            ValidatorClient::Teku => "teku",
            ValidatorClient::Prysm => "prysm",
            ValidatorClient::Nimbus => "nimbus",
            ValidatorClient::Lodestar => "lodestar",
        }
    }
}

impl std::fmt::Display for ValidatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DistributedValidatorSpec {
    /// The beacon node endpoints, primary first; none when the spec names none.
    pub fn beacon_endpoints(&self) -> &[String] {
        self.beacon_nodes
            .as_ref()
            .map(|b| b.endpoints.as_slice())
            .unwrap_or_default()
    }

    /// Number of members (`n`).
    pub fn member_count(&self) -> u32 {
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }

    /// The threshold in force: the spec's, or the default for the member count.
    pub fn effective_threshold(&self) -> u32 {
        self.threshold
            .unwrap_or_else(|| crate::domain::quorum::default_threshold(self.member_count()))
    }
}

#[cfg(test)]
mod tests;
