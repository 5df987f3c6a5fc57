//! Every object a validated DV needs, pure: per member a headless Service and a StatefulSet
//! (Charon plus the member's validator client), and one PodDisruptionBudget for the DV.

pub mod clients;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, HTTPGetAction, KeyToPath, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::model::{Cluster, LockVolume, Member, stable_hash};
use super::names::*;

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
    let text = serde_json::to_string(&*object).unwrap_or_default();
    let hash = stable_hash(&[&text]);
    meta(object)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_SPEC_HASH.to_owned(), hash);
}

pub fn build(cluster: &Cluster) -> Desired {
    let services = cluster
        .members
        .iter()
        .map(|m| service(cluster, m))
        .collect();
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

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        end_port: None,
    }
}

/// Members accept p2p only from members of the same DV (and the listed relay CIDRs), and
/// metrics only from the listed namespaces; the validator API is pod-local and never exposed.
fn network_policy(cluster: &Cluster) -> NetworkPolicy {
    let same_dv = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            LABEL_DV.to_owned(),
            cluster.name.clone(),
        )])),
        match_expressions: None,
    };
    let mut p2p_from = vec![NetworkPolicyPeer {
        pod_selector: Some(same_dv.clone()),
        ..NetworkPolicyPeer::default()
    }];
    p2p_from.extend(
        cluster
            .network_policy
            .relay_cidrs
            .iter()
            .map(|cidr| NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: cidr.clone(),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            }),
    );
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(p2p_from),
        ports: Some(vec![tcp(PORT_P2P)]),
    }];
    if !cluster.network_policy.metrics_namespaces.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: None,
                    match_expressions: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                            key: "kubernetes.io/metadata.name".to_owned(),
                            operator: "In".to_owned(),
                            values: Some(cluster.network_policy.metrics_namespaces.clone()),
                        },
                    ]),
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![tcp(PORT_MONITORING), tcp(PORT_VC_METRICS)]),
        });
    }
    let mut policy = NetworkPolicy {
        metadata: child_metadata(cluster, cluster.name.clone(), dv_labels(cluster)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(same_dv),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    };
    stamp(&mut policy, |p| &mut p.metadata);
    policy
}

/// Headless, publishing not-ready addresses: peers must find a member's p2p address before it
/// is ready, because its readiness depends on them.
fn service(cluster: &Cluster, member: &Member) -> Service {
    let mut service = Service {
        metadata: child_metadata(
            cluster,
            member_object_name(&cluster.name, &member.name),
            member_labels(cluster, member),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(member_selector(cluster, member)),
            ports: Some(vec![
                port("p2p-tcp", PORT_P2P),
                port("monitoring", PORT_MONITORING),
                port("vc-metrics", PORT_VC_METRICS),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    stamp(&mut service, |s| &mut s.metadata);
    service
}

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// One budget over all members with an integer `minAvailable: t`: an eviction may never leave
/// fewer than `t` members ready (a `maxUnavailable: t` budget would let quorum be evicted).
fn pdb(cluster: &Cluster) -> PodDisruptionBudget {
    let mut pdb = PodDisruptionBudget {
        metadata: child_metadata(cluster, cluster.name.clone(), dv_labels(cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(cluster.quorum.threshold() as i32)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_DV.to_owned(),
                    cluster.name.clone(),
                )])),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    };
    stamp(&mut pdb, |p| &mut p.metadata);
    pdb
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The restricted Pod Security Standard for every container.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(PORT_MONITORING),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

fn charon_container(cluster: &Cluster, member: &Member) -> Container {
    let run = clients::charon::run(cluster, member);
    let env_vars: Vec<EnvVar> = cluster
        .charon_extra_env
        .iter()
        .map(|(k, v)| env(k, v.clone()))
        .collect();
    Container {
        name: CONTAINER_CHARON.to_owned(),
        image: Some(member.charon_image.clone()),
        command: Some(run.command()),
        args: Some(run.args()),
        env: (!env_vars.is_empty()).then_some(env_vars),
        ports: Some(vec![
            container_port("validator-api", PORT_VALIDATOR_API),
            container_port("p2p-tcp", PORT_P2P),
            container_port("monitoring", PORT_MONITORING),
        ]),
        // Charon writes nothing of its own here (charon v1.7.1 has no data dir); the volume stays
        // because a StatefulSet's volumeClaimTemplates cannot change on a live cluster. The ENR
        // key is read from its Secret, read-only: no copy outlives the Secret.
        volume_mounts: Some(vec![
            mount(VOLUME_CHARON_DATA, MOUNT_CHARON_DATA, false),
            mount(VOLUME_LOCK, MOUNT_LOCK, true),
            mount(VOLUME_ENR_KEY, MOUNT_ENR_KEY, true),
            mount(VOLUME_TMP, MOUNT_TMP, false),
        ]),
        // /livez says whether Charon itself works; /readyz also needs quorum peers, so a
        // member without peers is not ready but must not be restarted for it.
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 10, 3)),
        startup_probe: Some(http_probe("/livez", 5, 60)),
        resources: member.charon_resources.clone(),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

fn container_port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn client_mounts() -> Vec<VolumeMount> {
    vec![
        mount(VOLUME_VC_DATA, MOUNT_VC_DATA, false),
        mount(VOLUME_KEY_SHARE, MOUNT_KEY_SHARE, true),
        mount(VOLUME_TMP, MOUNT_TMP, false),
    ]
}

fn client_containers(cluster: &Cluster, member: &Member) -> (Container, Vec<Container>) {
    let run = clients::client_run(cluster, member);
    let env_vars: Vec<EnvVar> = cluster
        .client_extra_env
        .iter()
        .map(|(k, v)| env(k, v.clone()))
        .collect();
    let main = Container {
        name: CONTAINER_VALIDATOR_CLIENT.to_owned(),
        image: Some(member.client_image.clone()),
        command: Some(run.main.command()),
        args: Some(run.main.args()),
        env: (!env_vars.is_empty()).then_some(env_vars),
        ports: Some(vec![container_port("vc-metrics", PORT_VC_METRICS)]),
        volume_mounts: Some(client_mounts()),
        resources: member.client_resources.clone(),
        security_context: Some(restricted()),
        ..Container::default()
    };
    let init = run
        .init
        .into_iter()
        .map(|step| Container {
            name: step.name.to_owned(),
            image: Some(match step.image {
                clients::StepImage::Client => member.client_image.clone(),
                clients::StepImage::Other(image) => image,
            }),
            command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), step.script]),
            env: (!step.env.is_empty()).then(|| {
                step.env
                    .into_iter()
                    .map(|(name, value)| env(&name, value))
                    .collect()
            }),
            volume_mounts: Some(client_mounts()),
            security_context: Some(restricted()),
            ..Container::default()
        })
        .collect();
    (main, init)
}

/// Removes the copy of the ENR private key that operator versions before 0.2 left on the
/// member's retained Charon volume (Charon now reads the key from its Secret): a private key must
/// not outlive its Secret. Idempotent; touches nothing else on the volume. Runs `/bin/sh` in the
/// Charon image, whose final stage is debian:bookworm-slim (charon v1.7.1 Dockerfile).
fn remove_old_enr_key_copy(member: &Member) -> Container {
    Container {
        name: INIT_REMOVE_OLD_ENR_KEY_COPY.to_owned(),
        image: Some(member.charon_image.clone()),
        command: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!("set -eu\nrm -f {MOUNT_CHARON_DATA}/{ENR_KEY_FILE}\n"),
        ]),
        volume_mounts: Some(vec![mount(VOLUME_CHARON_DATA, MOUNT_CHARON_DATA, false)]),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items,
            default_mode: Some(0o400),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn volumes(cluster: &Cluster, member: &Member) -> Vec<Volume> {
    let lock = match &cluster.lock {
        LockVolume::ConfigMap { name, key } => Volume {
            name: VOLUME_LOCK.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                items: Some(vec![KeyToPath {
                    key: key.clone(),
                    path: LOCK_FILE.to_owned(),
                    mode: None,
                }]),
                default_mode: Some(0o444),
                optional: Some(false),
            }),
            ..Volume::default()
        },
        LockVolume::Secret { name, key } => secret_volume(
            VOLUME_LOCK,
            name,
            Some(vec![KeyToPath {
                key: key.clone(),
                path: LOCK_FILE.to_owned(),
                mode: None,
            }]),
        ),
    };
    vec![
        lock,
        // Only this member's Secrets: never another member's key share or ENR key.
        secret_volume(
            VOLUME_ENR_KEY,
            &member.enr_secret,
            Some(vec![KeyToPath {
                key: member.enr_key.clone(),
                path: ENR_KEY_FILE.to_owned(),
                mode: None,
            }]),
        ),
        secret_volume(VOLUME_KEY_SHARE, &member.key_share_secret, None),
        Volume {
            name: VOLUME_TMP.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
}

fn affinity(cluster: &Cluster, member: &Member) -> Affinity {
    let zone = member.zone.as_ref().map(|zone| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: cluster.zone_label.clone(),
                    operator: "In".to_owned(),
                    values: Some(vec![zone.clone()]),
                }]),
                match_fields: None,
            }],
        }),
        preferred_during_scheduling_ignored_during_execution: None,
    });
    Affinity {
        node_affinity: zone,
        // Two members of one DV on one node would let one node failure take both.
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        LABEL_DV.to_owned(),
                        cluster.name.clone(),
                    )])),
                    match_expressions: None,
                }),
                topology_key: "kubernetes.io/hostname".to_owned(),
                ..PodAffinityTerm::default()
            }]),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        pod_affinity: None,
    }
}

fn claim(name: &str, size: &str, storage_class: Option<&String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage_class.cloned(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn statefulset(cluster: &Cluster, member: &Member) -> StatefulSet {
    let name = member_object_name(&cluster.name, &member.name);
    let labels = member_labels(cluster, member);
    let (client, client_init) = client_containers(cluster, member);
    let mut init_containers = vec![remove_old_enr_key_copy(member)];
    init_containers.extend(client_init);
    let retention = if cluster.storage.retain_on_delete {
        "Retain"
    } else {
        "Delete"
    };
    let mut pod_annotations = BTreeMap::from([
        (
            ANNOTATION_INPUTS_HASH.to_owned(),
            member.inputs_hash.clone(),
        ),
        (
            ANNOTATION_THRESHOLD.to_owned(),
            cluster.quorum.threshold().to_string(),
        ),
    ]);
    // A restart request changes the template, hence the revision: the member is outdated until
    // its pod is replaced, by the planner, as any rollout step.
    if let Some(at) = &member.restart_requested_at {
        pod_annotations.insert(ANNOTATION_RESTARTED_AT.to_owned(), at.clone());
    }
    let mut set = StatefulSet {
        metadata: child_metadata(cluster, name.clone(), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name),
            selector: LabelSelector {
                match_labels: Some(member_selector(cluster, member)),
                match_expressions: None,
            },
            // The operator decides when a member's pod restarts (never below threshold).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            pod_management_policy: Some("Parallel".to_owned()),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.to_owned()),
                    when_scaled: Some(retention.to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    init_containers: Some(init_containers),
                    containers: vec![charon_container(cluster, member), client],
                    volumes: Some(volumes(cluster, member)),
                    affinity: Some(affinity(cluster, member)),
                    node_selector: (!member.node_selector.is_empty())
                        .then(|| member.node_selector.clone()),
                    tolerations: (!member.tolerations.is_empty())
                        .then(|| member.tolerations.clone()),
                    termination_grace_period_seconds: Some(60),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![
                claim(
                    VOLUME_CHARON_DATA,
                    &cluster.storage.charon_size,
                    cluster.storage.storage_class_name.as_ref(),
                ),
                claim(
                    VOLUME_VC_DATA,
                    &cluster.storage.validator_client_size,
                    cluster.storage.storage_class_name.as_ref(),
                ),
            ]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    };
    stamp(&mut set, |s| &mut s.metadata);
    set
}

#[cfg(test)]
mod tests;
