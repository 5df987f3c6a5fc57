//! A member's StatefulSet: one replica, its pod template, its claims (Charon's and the
//! client's data, never deleted by us) and its update strategy.

use super::child_metadata;
use super::member_labels;
use super::member_selector;
use super::pod::affinity;
use super::pod::charon_container;
use super::pod::client_containers;
use super::pod::remove_old_enr_key_copy;
use super::pod::volumes;
use super::stamp;
use crate::controller::model::Cluster;
use crate::controller::model::Member;
use crate::controller::names::ANNOTATION_INPUTS_HASH;
use crate::controller::names::ANNOTATION_RESTARTED_AT;
use crate::controller::names::ANNOTATION_THRESHOLD;
use crate::controller::names::MEMBER_REPLICAS;
use crate::controller::names::VOLUME_CHARON_DATA;
use crate::controller::names::VOLUME_VC_DATA;
use crate::controller::names::member_object_name;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy;
use k8s_openapi::api::apps::v1::StatefulSetSpec;
use k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::core::v1::VolumeResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub(super) fn claim(
    name: &str,
    size: &str,
    storage_class: Option<&String>,
) -> PersistentVolumeClaim {
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

pub(super) fn statefulset(cluster: &Cluster, member: &Member) -> StatefulSet {
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
            replicas: Some(MEMBER_REPLICAS),
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
                    security_context: Some(super::restricted_pod_security_context()),
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
