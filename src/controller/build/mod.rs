//! Every object a validated DV needs, pure: per member a headless Service and a StatefulSet
//! (Charon plus the member's validator client), and one PodDisruptionBudget for the DV.

mod budget;
mod network;
mod pod;
mod statefulset;

use budget::pdb;
use network::{network_policy, p2p_service, service};
use statefulset::statefulset;

pub mod clients;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PodSecurityContext, SeccompProfile, SecurityContext, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::model::{Cluster, Member, stable_hash, stable_hash_of};
use super::names::{
    ANNOTATION_SPEC_HASH, FIELD_MANAGER, LABEL_CLIENT, LABEL_COMPONENT, LABEL_DV, LABEL_INSTANCE,
    LABEL_MANAGED_BY, LABEL_MEMBER, LABEL_NAME, LABEL_OPERATOR_CLASS, LABEL_PART_OF,
    LABEL_SHARE_INDEX, RUN_AS_USER,
};

/// Everything one DV needs. The applier destructures it without `..`, so a new kind of object
/// that nobody applies does not compile.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub services: Vec<Service>,
    pub statefulsets: Vec<StatefulSet>,
    pub pdb: PodDisruptionBudget,
    /// `None` when the DV opts out (an existing one of ours is then removed).
    pub network_policy: Option<NetworkPolicy>,
}

/// Labels every child of a DV carries.
pub fn dv_labels(cluster: &Cluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "charon".to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.name.clone()),
        (LABEL_PART_OF.to_owned(), "distributed-validator".to_owned()),
        (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
        (LABEL_DV.to_owned(), cluster.name.clone()),
    ])
}

/// Labels that select one member's pod.
pub fn member_selector(cluster: &Cluster, member: &Member) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_DV.to_owned(), cluster.name.clone()),
        (LABEL_MEMBER.to_owned(), member.name.clone()),
    ])
}

fn member_labels(cluster: &Cluster, member: &Member) -> BTreeMap<String, String> {
    let mut labels = dv_labels(cluster);
    labels.insert(LABEL_COMPONENT.to_owned(), "member".to_owned());
    labels.insert(LABEL_MEMBER.to_owned(), member.name.clone());
    labels.insert(LABEL_SHARE_INDEX.to_owned(), member.index.to_string());
    labels.insert(LABEL_CLIENT.to_owned(), member.client.as_str().to_owned());
    labels.insert(
        LABEL_OPERATOR_CLASS.to_owned(),
        member.operator_class.as_str().to_owned(),
    );
    labels
}

fn owner(cluster: &Cluster) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
        kind: "DistributedValidator".to_owned(),
        name: cluster.name.clone(),
        uid: cluster.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child object: name, namespace, labels, the DV as controlling owner.
fn child_metadata(cluster: &Cluster, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![owner(cluster)]),
        ..ObjectMeta::default()
    }
}

/// Stamps an object with the hash of its own desired form, so that an unchanged object is
/// recognised in the cache and not written again.
fn stamp<T: serde::Serialize>(object: &mut T, meta: impl Fn(&mut T) -> &mut ObjectMeta) {
    // Encoding a k8s-openapi object cannot fail (no map with non-string keys, no failing
    // `Serialize`); were it to, the hash of nothing still names a form to apply.
    let hash = stable_hash_of(&*object).unwrap_or_else(|_| stable_hash(&[""]));
    meta(object)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_SPEC_HASH.to_owned(), hash);
}

pub fn build(cluster: &Cluster) -> Desired {
    let mut services: Vec<Service> = cluster
        .members
        .iter()
        .map(|m| service(cluster, m))
        .collect();
    if let Some(exposure) = &cluster.p2p {
        services.extend(
            cluster
                .members
                .iter()
                .map(|m| p2p_service(cluster, m, exposure)),
        );
    }
    let statefulsets = cluster
        .members
        .iter()
        .map(|m| statefulset(cluster, m))
        .collect();
    Desired {
        services,
        statefulsets,
        pdb: pdb(cluster),
        network_policy: cluster
            .network_policy
            .enabled
            .then(|| network_policy(cluster)),
    }
}

/// A fingerprint of everything [`build`] reads from `cluster`: equal fingerprints build equal
/// children (up to a 64-bit collision, as for the spec hashes stamped on them). A reconcile
/// whose fingerprint matches its DV's last build, and whose children the caches show as
/// applied, needs no build (see `controller::built`).
pub fn inputs_fingerprint(cluster: &Cluster) -> u64 {
    // A destructuring without `..`: a new field of `Cluster` does not compile until it is
    // either fingerprinted or listed as unread (a test changes each unread field and compares
    // what is built).
    macro_rules! fingerprint {
        (read: $($read:ident),*; unread: $($unread:ident),*) => {{
            let Cluster { $($read,)* $($unread: _,)* } = cluster;
            super::model::debug_fingerprint(&[$($read),*])
        }};
    }
    fingerprint!(
        read: name, namespace, uid, quorum, network, lock, lock_summary, beacon_endpoints,
            beacon_headers_secret, test_network, relays, builder_api, log_level, charon_extra_args, charon_extra_env,
            client_extra_args, client_extra_env, storage, zone_label, network_policy, members,
            rollout, p2p;
        unread: zones, blocked, share_mismatches, storage_growth, client_changes_held, roster,
            peers, remote_up
    )
}

/// One built child as the applier checks it against the caches: kind, name and the spec hash
/// stamped on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltChild {
    pub kind: ChildKind,
    pub name: String,
    pub hash: String,
}

/// The kinds of child a DV has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Service,
    PodDisruptionBudget,
    NetworkPolicy,
    StatefulSet,
}

impl ChildKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Service => "Service",
            ChildKind::PodDisruptionBudget => "PodDisruptionBudget",
            ChildKind::NetworkPolicy => "NetworkPolicy",
            ChildKind::StatefulSet => "StatefulSet",
        }
    }
}

impl Desired {
    /// Every child with its name and stamped hash, in the order they are applied.
    pub fn children(&self) -> Vec<BuiltChild> {
        fn child(kind: ChildKind, meta: &ObjectMeta) -> BuiltChild {
            BuiltChild {
                kind,
                name: meta.name.clone().unwrap_or_default(),
                hash: meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_SPEC_HASH))
                    .cloned()
                    .unwrap_or_default(),
            }
        }
        let Desired {
            services,
            statefulsets,
            pdb,
            network_policy,
        } = self;
        services
            .iter()
            .map(|s| child(ChildKind::Service, &s.metadata))
            .chain([child(ChildKind::PodDisruptionBudget, &pdb.metadata)])
            .chain(
                network_policy
                    .iter()
                    .map(|p| child(ChildKind::NetworkPolicy, &p.metadata)),
            )
            .chain(
                statefulsets
                    .iter()
                    .map(|s| child(ChildKind::StatefulSet, &s.metadata)),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests;

/// The security context every container of ours runs with (the restricted Pod Security
/// Standard), for the Jobs the CLI renders.
pub fn restricted_security_context() -> SecurityContext {
    pod::restricted()
}

/// The pod security context of every pod of ours: non-root as the images' user, volumes
/// group-owned by it.
pub fn restricted_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}
