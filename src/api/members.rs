//! A member of the spec: its share index, its operator (name and class), its key-share and ENR
//! Secrets, and what may be set per member (client, images, resources).

use super::*;

/// One member of the cluster: one operator node holding one key share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.remote) && self.remote) ? (!has(self.keyShareSecret) && !has(self.enrSecret)) : (has(self.keyShareSecret) && has(self.enrSecret))").message("a member run here names its keyShareSecret and enrSecret; a remote member names neither"))]
pub struct MemberSpec {
    /// Member name, unique in the DV. The member's StatefulSet and Service are `<dv>-<name>`.
    #[schemars(
        length(min = 1, max = 50),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Position of this member's operator in the cluster lock (0-based). Member `i` runs key
    /// share `i + 1`. Cannot change once set.
    #[schemars(range(min = 0, max = 31))]
    pub index: u32,
    /// Validator client this member runs. When unset, the operator assigns one to keep clients
    /// diverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_client: Option<ValidatorClient>,
    /// Zone this member must run in. When unset, the operator assigns one to keep zones diverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub zone: Option<String>,
    /// The entity operating this member.
    pub operator: OperatorRef,
    /// Run by another organisation on its own infrastructure: nothing is built here for it and
    /// no Secret is needed; its health is what this cluster's members' Charon sees of it (ping
    /// success), and it counts toward quorum like any member. Its index, operator and class still
    /// decide diversity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// Secret holding this member's key share: `keystore-N.json` and `keystore-N.txt` (its
    /// password) for each validator N in the lock. Required for a member run here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_share_secret: Option<SecretRef>,
    /// Secret holding this member's Charon ENR private key. Required for a member run here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enr_secret: Option<EnrSecretRef>,
    /// The DNS name or IP address peers outside this cluster reach this member at, advertised by
    /// Charon (`--p2p-external-hostname` or `--p2p-external-ip`). With `spec.p2p` of type
    /// LoadBalancer and this unset, the address the Service gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub external_address: Option<String>,
    /// With `spec.p2p` of type NodePort: the node port (30000-32767) of this member's p2p port.
    /// Charon listens on the same port number, since Charon v1.7.1 advertises the port it
    /// listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<u16>,
    /// Compute resources per container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<MemberResources>,
    /// Node labels this member's pod must match, in addition to its zone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for this member's pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Image overrides for this member only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<MemberImages>,
}

impl MemberSpec {
    /// The Secrets this member names (its key share and its ENR; none for a remote member).
    pub fn secret_names(&self) -> impl Iterator<Item = &String> {
        self.key_share_secret
            .iter()
            .map(|s| &s.name)
            .chain(self.enr_secret.iter().map(|s| &s.name))
    }

    /// Whether this cluster runs the member (it is not run by another organisation).
    pub fn is_local(&self) -> bool {
        !self.remote
    }
}

/// The entity operating a member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRef {
    /// Name of the operating entity. No single name may hold `threshold` members.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Class of the operating entity. No single class may hold `threshold` members.
    pub class: OperatorClass,
}

/// Class of an operating entity (Stader's DVT pool mixes both).
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
pub enum OperatorClass {
    Permissioned,
    Permissionless,
}

impl OperatorClass {
    /// The class name as written in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorClass::Permissioned => "permissioned",
            OperatorClass::Permissionless => "permissionless",
        }
    }
}

/// A Secret in the DV's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// The Secret holding a member's Charon ENR private key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrSecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key holding the private key. Defaults to `charon-enr-private-key`.
    #[serde(default = "default_enr_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

pub(super) fn default_enr_key() -> String {
    DEFAULT_ENR_KEY.to_owned()
}

/// Compute resources of a member's containers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberResources {
    /// Resources of the Charon container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charon: Option<ResourceRequirements>,
    /// Resources of the validator-client container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_client: Option<ResourceRequirements>,
}

/// Image overrides for one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberImages {
    /// Charon image for this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub charon: Option<String>,
    /// Validator-client image for this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub validator_client: Option<String>,
}
