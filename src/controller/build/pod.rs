//! A member's pod template: the Charon container, the validator client and its init steps,
//! the key-share and ENR volumes (each member's own Secrets only), probes, security context
//! and zone affinity.

use super::clients;
use crate::controller::model::Cluster;
use crate::controller::model::LockVolume;
use crate::controller::model::Member;
use crate::controller::names::CONTAINER_CHARON;
use crate::controller::names::CONTAINER_VALIDATOR_CLIENT;
use crate::controller::names::ENR_KEY_FILE;
use crate::controller::names::INIT_REMOVE_OLD_ENR_KEY_COPY;
use crate::controller::names::LABEL_DV;
use crate::controller::names::LOCK_FILE;
use crate::controller::names::MOUNT_CHARON_DATA;
use crate::controller::names::MOUNT_ENR_KEY;
use crate::controller::names::MOUNT_KEY_SHARE;
use crate::controller::names::MOUNT_LOCK;
use crate::controller::names::MOUNT_TMP;
use crate::controller::names::PORT_MONITORING;
use crate::controller::names::PORT_VALIDATOR_API;
use crate::controller::names::PORT_VC_METRICS;
use crate::controller::names::RUN_AS_USER;
use crate::controller::names::VOLUME_CHARON_DATA;
use crate::controller::names::VOLUME_ENR_KEY;
use crate::controller::names::VOLUME_KEY_SHARE;
use crate::controller::names::VOLUME_LOCK;
use crate::controller::names::VOLUME_TMP;
use crate::controller::names::VOLUME_VC_DATA;
use crate::controller::names::vc_data_mount;
use k8s_openapi::api::core::v1::Affinity;
use k8s_openapi::api::core::v1::Capabilities;
use k8s_openapi::api::core::v1::ConfigMapVolumeSource;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::api::core::v1::ContainerPort;
use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::api::core::v1::EnvVarSource;
use k8s_openapi::api::core::v1::HTTPGetAction;
use k8s_openapi::api::core::v1::KeyToPath;
use k8s_openapi::api::core::v1::NodeAffinity;
use k8s_openapi::api::core::v1::NodeSelector;
use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::api::core::v1::NodeSelectorTerm;
use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::api::core::v1::PodAntiAffinity;
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::api::core::v1::SeccompProfile;
use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::api::core::v1::SecretVolumeSource;
use k8s_openapi::api::core::v1::SecurityContext;
use k8s_openapi::api::core::v1::Volume;
use k8s_openapi::api::core::v1::VolumeMount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub(super) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The restricted Pod Security Standard for every container.
pub(super) fn restricted() -> SecurityContext {
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

pub(super) fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
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

/// Charon reads every flag from a `CHARON_` variable too (cmd/cmd.go v1.10.3: viper with the
/// env prefix `charon` and `-` as `_`): the beacon node headers (an API token, say) reach it from
/// their Secret by reference, so that the value is in no object the operator writes.
const ENV_BEACON_NODE_HEADERS: &str = "CHARON_BEACON_NODE_HEADERS";

pub(super) fn charon_container(cluster: &Cluster, member: &Member) -> Container {
    let run = clients::charon::run(cluster, member);
    let mut env_vars: Vec<EnvVar> = cluster
        .charon_extra_env
        .iter()
        .map(|(k, v)| env(k, v.clone()))
        .collect();
    if let Some(headers) = &cluster.beacon_headers_secret {
        env_vars.push(EnvVar {
            name: ENV_BEACON_NODE_HEADERS.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: headers.name.clone(),
                    key: headers.key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    Container {
        name: CONTAINER_CHARON.to_owned(),
        image: Some(member.charon_image.clone()),
        command: Some(run.command()),
        args: Some(run.args()),
        env: (!env_vars.is_empty()).then_some(env_vars),
        ports: Some(vec![
            container_port("validator-api", PORT_VALIDATOR_API),
            container_port("p2p-tcp", member.p2p_port),
            container_port("monitoring", PORT_MONITORING),
        ]),
        // Charon writes nothing of its own here (charon v1.10.3's `run` has no data dir); the
        // volume stays because a StatefulSet's volumeClaimTemplates cannot change on a live
        // cluster. The ENR key is read from its Secret, read-only: no copy outlives the Secret.
        volume_mounts: Some(charon_mounts(cluster)),
        // /livez says whether Charon itself works; /readyz also needs quorum peers, so a
        // member without peers is not ready but must not be restarted for it.
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 10, 3)),
        startup_probe: Some(http_probe("/livez", 5, 60)),
        resources: member.charon_resources.clone(),
        security_context: Some(restricted()),
        termination_message_policy: Some(LAST_WORDS_FROM_LOGS.to_owned()),
        ..Container::default()
    }
}

/// Every container's termination message, on failure, is the end of its log
/// (`FallbackToLogsOnError`, core/v1 types.go): the DV's status shows the last line of a
/// container that crash-loops (a flag Charon refuses, a key import that fails) where a user
/// looks first, and `kubectl describe pod` shows the rest.
const LAST_WORDS_FROM_LOGS: &str = "FallbackToLogsOnError";

/// Charon's mounts; in test-network mode its validator mock also reads the member's own key
/// shares (read-only, from their Secret).
fn charon_mounts(cluster: &Cluster) -> Vec<VolumeMount> {
    let mut mounts = vec![
        mount(VOLUME_CHARON_DATA, MOUNT_CHARON_DATA, false),
        mount(VOLUME_LOCK, MOUNT_LOCK, true),
        mount(VOLUME_ENR_KEY, MOUNT_ENR_KEY, true),
    ];
    if cluster.test_network.is_some() {
        mounts.push(mount(VOLUME_KEY_SHARE, MOUNT_KEY_SHARE, true));
    }
    mounts.push(mount(VOLUME_TMP, MOUNT_TMP, false));
    mounts
}

pub(super) fn container_port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// The validator-client volume where the image the container runs sees it
/// ([`vc_data_mount`]), the member's key shares and scratch space.
pub(super) fn client_mounts(data_mount: &str) -> Vec<VolumeMount> {
    vec![
        mount(VOLUME_VC_DATA, data_mount, false),
        mount(VOLUME_KEY_SHARE, MOUNT_KEY_SHARE, true),
        mount(VOLUME_TMP, MOUNT_TMP, false),
    ]
}

pub(super) fn client_containers(cluster: &Cluster, member: &Member) -> (Container, Vec<Container>) {
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
        volume_mounts: Some(client_mounts(vc_data_mount(member.client))),
        resources: member.client_resources.clone(),
        security_context: Some(restricted()),
        termination_message_policy: Some(LAST_WORDS_FROM_LOGS.to_owned()),
        ..Container::default()
    };
    // A client change: the old client exports the history first, the new one imports it last,
    // after its keys are in place and before it starts. Their termination messages carry the
    // file's summary, or on failure the end of their output (as every step's does).
    let migration = member.migration.as_ref().map(|migration| {
        (
            clients::migration::export_step(cluster, migration),
            clients::migration::import_step(cluster, migration, &member.client_image),
        )
    });
    let mut steps: Vec<clients::InitStep> = match migration {
        Some((export, import)) => std::iter::once(export)
            .chain(run.init)
            .chain(std::iter::once(import))
            .collect(),
        None => run.init,
    };
    // Last: no client starts over another client's history that was never imported into it.
    steps.push(clients::migration::check_step(
        member.client,
        member.history_moved_by_hand,
    ));
    let init = steps
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
            volume_mounts: Some(client_mounts(step.data_mount)),
            security_context: Some(restricted()),
            termination_message_policy: Some(LAST_WORDS_FROM_LOGS.to_owned()),
            ..Container::default()
        })
        .collect();
    (main, init)
}

/// Removes the copy of the ENR private key that operator versions before 0.2 left on the
/// member's retained Charon volume (Charon now reads the key from its Secret): a private key must
/// not outlive its Secret. Idempotent; touches nothing else on the volume. Runs `/bin/sh` in the
/// Charon image, whose final stage is debian:trixie-slim (charon v1.10.3 Dockerfile).
pub(super) fn remove_old_enr_key_copy(member: &Member) -> Container {
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
        termination_message_policy: Some(LAST_WORDS_FROM_LOGS.to_owned()),
        ..Container::default()
    }
}

pub(super) fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
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

pub(super) fn volumes(cluster: &Cluster, member: &Member) -> Vec<Volume> {
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

pub(super) fn affinity(cluster: &Cluster, member: &Member) -> Affinity {
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
