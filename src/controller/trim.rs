//! What the reflector caches keep of each object: only the fields a reconcile reads. A pod or a
//! StatefulSet with its template and managed fields weighs tens of kilobytes once decoded; at a
//! thousand DVs the caches would hold hundreds of megabytes of fields nobody looks at.
//!
//! Every cache is trimmed as objects arrive, before they are stored. Keep these functions in step
//! with `health`, `status` and `apply`: the tests below check that trimmed objects decide the
//! same as whole ones.

use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeSpec, NodeStatus, PodCondition, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;

use super::cached;

/// Managed fields describe who set which field; nothing here reads them.
fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
}

/// A child of the operator's: of its managed fields only other writers' entries stay (usually
/// none), which is what drift detection reads ([`super::drift`]).
fn child_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields =
        super::drift::foreign_entries(meta.managed_fields.take(), super::names::FIELD_MANAGER);
}

/// Keeps only `keys` of a label or annotation map: at a thousand DVs the pod and StatefulSet
/// caches held about 20 MB of labels and annotations (the template's, the StatefulSet
/// controller's, the recommended `app.kubernetes.io` set) that no reconcile reads.
fn keep_only(map: &mut Option<std::collections::BTreeMap<String, String>>, keys: &[&str]) {
    if let Some(entries) = map {
        entries.retain(|key, _| keys.contains(&key.as_str()));
        if entries.is_empty() {
            *map = None;
        }
    }
}

/// The labels a reconcile reads of a member pod: its DV (which DV a change concerns, and that a
/// pod of the right name is the DV's) and its revision (outdated or not).
const POD_LABELS: [&str; 2] = [super::names::LABEL_DV, "controller-revision-hash"];

/// The annotation a reconcile reads of a member pod: when it was asked to restart.
const POD_ANNOTATIONS: [&str; 1] = [super::names::ANNOTATION_RESTARTED_AT];

/// The label a reconcile reads of a member StatefulSet: its DV.
const STATEFULSET_LABELS: [&str; 1] = [super::names::LABEL_DV];

/// The annotation a reconcile reads of a member StatefulSet: the compact claim templates this
/// cache adds (its spec hash is kept apart, see [`keep_spec_hash_apart`]).
const STATEFULSET_ANNOTATIONS: [&str; 1] = [CACHED_CLAIMS];

/// The cached copy of a child of the operator's keeps its spec hash (apply or not) in
/// `metadata.selfLink`, which kube-apiserver has left empty since 1.20 (KEP-1164, the field's
/// removal), instead of in the `dvt.io/spec-hash` annotation: a label or annotation map costs an
/// 11-slot `BTreeMap` leaf, about 540 bytes, however few its entries, and at a thousand DVs six
/// thousand Services, budgets and policies kept such a map for this hash alone. Cache-only, like
/// [`CACHED_CLAIMS`]: the operator applies what it builds, never what it caches. Whatever a
/// server put in `selfLink` is replaced, so the cached hash is always the annotation's.
fn keep_spec_hash_apart(meta: &mut ObjectMeta) {
    meta.self_link = meta
        .annotations
        .as_mut()
        .and_then(|annotations| annotations.remove(super::names::ANNOTATION_SPEC_HASH));
}

/// A cached child's spec hash, where trimming keeps it ([`keep_spec_hash_apart`]); every cache
/// of children is trimmed as it is filled (`caches::owned_cache`).
pub fn cached_spec_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.self_link.as_deref()
}

/// A DistributedValidator: everything but its managed fields (spec and status are read).
pub fn distributed_validator(dv: &mut crate::api::DistributedValidator) {
    metadata(&mut dv.metadata);
}

/// A StatefulSet: metadata (labels, owner, the spec hash kept apart, other writers' managed
/// fields) and status (the update revision); the spec is the operator's own, compared by hash
/// and, for other writers, by managed fields. Of it only the claim templates' names, sizes and
/// classes are kept (what a change of `spec.storage` is compared with, since they cannot
/// change), written compactly into the cached copy's [`CACHED_CLAIMS`] annotation: decoded
/// claim templates would cost a few kB per StatefulSet.
pub fn statefulset(set: &mut cached::StatefulSet) {
    child_metadata(&mut set.metadata);
    keep_only(&mut set.metadata.labels, &STATEFULSET_LABELS);
    keep_spec_hash_apart(&mut set.metadata);
    let replicas = set.spec.as_ref().and_then(|spec| spec.replicas);
    if replicas.is_some_and(|r| r != super::names::MEMBER_REPLICAS) {
        note_replicas_drift(&mut set.metadata);
    }
    if let Some(spec) = set.spec.take() {
        let claims = crate::controller::storage::live_claims_of_spec(&spec);
        set.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                CACHED_CLAIMS.to_owned(),
                crate::controller::storage::encode_claims(&claims),
            );
    }
    keep_only(&mut set.metadata.annotations, &STATEFULSET_ANNOTATIONS);
}

/// A member StatefulSet whose replicas are not the operator's: drift even when no other manager
/// owns the field, as after `kubectl scale --replicas=0` on a real apiserver (it takes the
/// field from its applier and gives it to nobody). Noted as another writer's ownership of
/// `spec.replicas` so that the applier's one drift rule puts it back.
fn note_replicas_drift(meta: &mut ObjectMeta) {
    let entries = meta.managed_fields.get_or_insert_with(Vec::new);
    let owned = |entry: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        entry
            .fields_v1
            .as_ref()
            .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
    };
    if !entries.iter().any(owned) {
        entries.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some(super::names::UNKNOWN_SCALER.to_owned()),
                subresource: Some("scale".to_owned()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    serde_json::json!({"f:spec": {"f:replicas": {}}}),
                )),
                ..Default::default()
            },
        );
    }
}

/// The cache-only annotation holding a trimmed StatefulSet's claim templates (never written to
/// the API: the operator applies what it builds, not what it caches).
pub const CACHED_CLAIMS: &str = "dvt.io/cached-claim-templates";

/// A member pod, decoded as [`cached::Pod`] (the node it is bound to; of its status the phase,
/// conditions, the pod IP and each container's readiness, restarts and states): of its
/// metadata only the labels and annotation a reconcile reads, and of its conditions Ready and
/// why it cannot be scheduled.
pub fn pod(pod: &mut cached::Pod) {
    metadata(&mut pod.metadata);
    keep_only(&mut pod.metadata.labels, &POD_LABELS);
    keep_only(&mut pod.metadata.annotations, &POD_ANNOTATIONS);
    if let Some(status) = pod.status.as_mut() {
        // Readiness with its transition time (restart delays, minReadySeconds), and why a pod
        // cannot be scheduled; not the other conditions, nor probe times and wording.
        status.conditions = status.conditions.take().map(|conditions| {
            conditions
                .into_iter()
                .filter_map(|c| match c.type_.as_str() {
                    "Ready" => Some(PodCondition {
                        type_: c.type_,
                        status: c.status,
                        last_transition_time: c.last_transition_time,
                        ..PodCondition::default()
                    }),
                    "PodScheduled" if c.status == "False" => Some(PodCondition {
                        last_probe_time: None,
                        ..c
                    }),
                    _ => None,
                })
                .collect()
        });
    }
}

/// A Service, budget or policy of the operator's: compared by its spec hash (kept apart, see
/// [`keep_spec_hash_apart`]) and, for other writers, by managed fields; owned by its owner
/// references. Its labels (the recommended `app.kubernetes.io` set, about a kilobyte decoded)
/// and other annotations are never read: at a thousand DVs six thousand such objects held about
/// 6 MB of labels. No map is left.
fn owned_metadata(meta: &mut ObjectMeta) {
    child_metadata(meta);
    meta.labels = None;
    keep_spec_hash_apart(meta);
    meta.annotations = None;
}

/// A Service, budget or policy of the operator's: see [`owned_metadata`].
pub fn service(service: &mut Service) {
    owned_metadata(&mut service.metadata);
    service.spec = None;
    // A LoadBalancer's address is what a member exposed with `spec.p2p` advertises.
    service.status = service.status.take().and_then(|status| {
        status
            .load_balancer
            .filter(|lb| lb.ingress.is_some())
            .map(|lb| k8s_openapi::api::core::v1::ServiceStatus {
                load_balancer: Some(lb),
                conditions: None,
            })
    });
}

/// See [`service`].
pub fn pod_disruption_budget(pdb: &mut PodDisruptionBudget) {
    owned_metadata(&mut pdb.metadata);
    pdb.spec = None;
    pdb.status = None;
}

/// See [`service`]; the owner references stay (the opt-out removes only a policy of its DV).
pub fn network_policy(policy: &mut NetworkPolicy) {
    owned_metadata(&mut policy.metadata);
    policy.spec = None;
}

/// A ConfigMap, already metadata only: of it a reconcile reads the name and resourceVersion (a
/// lock is read when that changes). Its labels and annotations go too: `kubectl apply` leaves
/// the whole manifest, the lock included, in `kubectl.kubernetes.io/last-applied-configuration`.
pub fn config_map(config_map: &mut PartialObjectMeta<ConfigMap>) {
    metadata(&mut config_map.metadata);
    config_map.metadata.labels = None;
    config_map.metadata.annotations = None;
}

/// A Secret, already metadata only: of it a reconcile reads the name and resourceVersion. Its
/// labels and annotations go too: `kubectl apply` leaves the whole manifest, key material
/// included, in `kubectl.kubernetes.io/last-applied-configuration`, and the operator keeps no
/// copy of secret values.
pub fn secret(secret: &mut PartialObjectMeta<k8s_openapi::api::core::v1::Secret>) {
    metadata(&mut secret.metadata);
    secret.metadata.labels = None;
    secret.metadata.annotations = None;
}

/// A Node: labels (zones), taints (out-of-service) and conditions (reachability). Its image
/// list and addresses can be the biggest part of it.
pub fn node(node: &mut Node) {
    metadata(&mut node.metadata);
    node.metadata.annotations = None;
    node.spec = node.spec.take().map(|spec| NodeSpec {
        taints: spec.taints,
        unschedulable: spec.unschedulable,
        ..NodeSpec::default()
    });
    node.status = node.status.take().map(|status| NodeStatus {
        conditions: status.conditions,
        ..NodeStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::{Observed, is_outdated};
    use crate::controller::{build, health, testing, validate};
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use serde_json::json;

    /// A member pod as the StatefulSet controller and kubelet make it: the builder's template,
    /// bound, running, ready, with managed fields.
    fn full_pod(set: &StatefulSet, ready: bool) -> Pod {
        let template = set.spec.as_ref().unwrap().template.clone();
        let mut pod = Pod {
            metadata: template.metadata.unwrap_or_default(),
            spec: template.spec,
            status: Some(
                serde_json::from_value(json!({
                    "phase": "Running",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2027-01-15T07:59:00Z"},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": "2027-01-15T07:59:30Z"},
                        {"type": "ContainersReady", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2027-01-15T08:00:00Z", "reason": "ContainersNotReady", "message": "containers with unready status: [charon]"},
                        {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2027-01-15T08:00:00Z", "lastProbeTime": null, "message": "containers with unready status: [charon]"},
                    ],
                    "hostIP": "10.0.0.3", "podIP": "10.1.0.7", "qosClass": "BestEffort",
                    "containerStatuses": [{"name": "charon", "image": "i", "imageID": "sha", "ready": ready, "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
                    "initContainerStatuses": [{"name": "copy-enr-key", "image": "i", "imageID": "sha", "ready": false, "restartCount": 5,
                        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}],
                }))
                .unwrap(),
            ),
        };
        pod.metadata.name = Some("stader-4-alpha-0".into());
        pod.metadata.uid = Some("uid-1".into());
        pod.metadata.creation_timestamp = Some(testing::time("2027-01-15T07:59:00Z"));
        pod.metadata
            .labels
            .get_or_insert_default()
            .insert("controller-revision-hash".into(), "rev-1".into());
        pod.metadata.managed_fields = Some(vec![Default::default()]);
        pod.spec.as_mut().unwrap().node_name = Some("node-3".into());
        pod
    }

    fn full_set(set: &StatefulSet) -> StatefulSet {
        let mut set = set.clone();
        set.status = Some(
            serde_json::from_value(json!({"replicas": 1, "updateRevision": "rev-2"})).unwrap(),
        );
        set.metadata.managed_fields = Some(vec![Default::default()]);
        set
    }

    /// A real kube-apiserver (v1.37.2) after `kubectl scale sts --replicas=0`: replicas 0, and
    /// no manager owns `spec.replicas` (the operator's apply entry lost it, `kubectl` got no
    /// entry). Measured on the real cluster; the simulated one had given `kubectl` an entry.
    #[test]
    fn replicas_scaled_away_with_no_owner_are_drift() {
        let (dv, facts) = testing::example("stader-4.yaml");
        let cluster = validate::validate(&dv, &facts).unwrap();
        let desired = build::build(&cluster);
        let ours = k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
            manager: Some(crate::controller::names::FIELD_MANAGER.to_owned()),
            operation: Some("Apply".to_owned()),
            fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                json!({"f:spec": {"f:serviceName": {}}}),
            )),
            ..Default::default()
        };
        for (replicas, drift) in [(0, true), (2, true), (1, false)] {
            let mut api_set = full_set(&desired.statefulsets[0]);
            api_set.spec.as_mut().unwrap().replicas = Some(replicas);
            api_set.metadata.managed_fields = Some(vec![ours.clone()]);
            let mut set = cached::from_api::<_, cached::StatefulSet>(&api_set).unwrap();
            statefulset(&mut set);
            let wanted = serde_json::to_value(&desired.statefulsets[0]).unwrap();
            let drifted = crate::controller::drift::drifted_fields(
                &wanted,
                set.metadata.managed_fields.as_deref().unwrap_or_default(),
                crate::controller::names::FIELD_MANAGER,
            );
            let fields: Vec<String> = drifted.iter().map(|d| d.field.clone()).collect();
            assert_eq!(
                fields == ["spec.replicas"],
                drift,
                "replicas {replicas}: {drifted:?}"
            );
        }
    }

    #[test]
    fn trimmed_members_are_judged_as_whole_ones() {
        let (dv, facts) = testing::example("stader-4.yaml");
        let cluster = validate::validate(&dv, &facts).unwrap();
        let desired = build::build(&cluster);
        let now = testing::time("2027-01-15T08:01:00Z").0;
        for ready in [true, false] {
            let api_set = full_set(&desired.statefulsets[0]);
            let api_pod = full_pod(&desired.statefulsets[0], ready);
            // As a watch decodes them into the cached shapes, before and after trimming.
            let whole_set = cached::from_api::<_, cached::StatefulSet>(&api_set).unwrap();
            let whole_pod = cached::from_api::<_, cached::Pod>(&api_pod).unwrap();
            let (mut set, mut member_pod) = (whole_set.clone(), whole_pod.clone());
            statefulset(&mut set);
            pod(&mut member_pod);
            assert!(set.spec.is_none() && set.metadata.managed_fields.is_none());
            assert_eq!(
                whole_pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
                Some("node-3")
            );
            assert_eq!(
                crate::controller::storage::live_claims(&set),
                crate::controller::storage::live_claims(&whole_set),
                "the claim templates are kept"
            );
            let status = member_pod.status.as_ref().unwrap();
            // The pod IP stays: the peer monitor reads the member's Charon there.
            assert_eq!(status.pod_ip.as_deref(), Some("10.1.0.7"));

            let judge = |set: &cached::StatefulSet, p: &cached::Pod| {
                let observed = Observed {
                    statefulset: Some(set),
                    pod: Some(p),
                    zone: None,
                    template_written: false,
                };
                let outdated = is_outdated(&observed);
                let member = health::member("alpha", 0, Some(p), None, outdated, None, now);
                format!("{outdated} {member:?}")
            };
            assert_eq!(
                judge(&set, &member_pod),
                judge(&whole_set, &whole_pod),
                "ready: {ready}"
            );
            // The spec hash that decides whether to apply survives (kept apart), next to the
            // compact claim templates; labels and annotations nobody reads do not.
            let mut kept = set.metadata.annotations.clone().unwrap_or_default();
            assert!(kept.remove(CACHED_CLAIMS).is_some());
            assert!(kept.is_empty(), "{kept:?}");
            let whole_hash = whole_set
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .get(crate::controller::names::ANNOTATION_SPEC_HASH);
            assert!(whole_hash.is_some());
            assert_eq!(
                cached_spec_hash(&set.metadata),
                whole_hash.map(String::as_str)
            );
            assert!(
                whole_set.metadata.labels.as_ref().unwrap().len()
                    > set.metadata.labels.as_ref().unwrap().len()
            );
            assert!(
                whole_pod.metadata.labels.as_ref().unwrap().len()
                    > member_pod.metadata.labels.as_ref().unwrap().len()
            );
            let conditions = status.conditions.as_ref().unwrap();
            assert_eq!(conditions.len(), 1, "only Ready is read");
        }
    }

    #[test]
    fn an_unschedulable_pod_keeps_why() {
        let mut whole: cached::Pod = serde_json::from_value(json!({
            "metadata": {"name": "stader-4-alpha-0", "labels": {"app.kubernetes.io/name": "dvt"}},
            "spec": {"containers": []},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/8 nodes are available"}]},
        }))
        .unwrap();
        let before = format!("{:?}", health::broken(&whole));
        pod(&mut whole);
        assert_eq!(format!("{:?}", health::broken(&whole)), before);
        assert!(before.contains("0/8 nodes are available"), "{before}");
        assert!(
            whole.metadata.labels.is_none(),
            "no label a reconcile reads"
        );
    }

    #[test]
    fn owned_objects_keep_what_apply_compares() {
        let (dv, facts) = testing::example("stader-4.yaml");
        let desired = build::build(&validate::validate(&dv, &facts).unwrap());
        let mut service = desired.services[0].clone();
        let hash = service.annotations()[crate::controller::names::ANNOTATION_SPEC_HASH].clone();
        assert!(service.metadata.labels.is_some());
        // A server before 1.20 filled selfLink: the cached copy's is the hash all the same.
        service.metadata.self_link = Some("/api/v1/namespaces/ns/services/x".to_owned());
        let mut edited = service.clone();
        super::service(&mut service);
        assert!(service.spec.is_none());
        // No label or annotation map at all: the hash is kept apart.
        assert!(service.metadata.labels.is_none());
        assert!(service.metadata.annotations.is_none());
        assert_eq!(cached_spec_hash(&service.metadata), Some(hash.as_str()));
        // Someone removed the hash by hand: the cached copy has none (and is applied again).
        edited.metadata.annotations = None;
        super::service(&mut edited);
        assert_eq!(cached_spec_hash(&edited.metadata), None);
        let mut policy = desired.network_policy.clone().unwrap();
        let owners = policy.metadata.owner_references.clone();
        let hash = policy.annotations()[crate::controller::names::ANNOTATION_SPEC_HASH].clone();
        network_policy(&mut policy);
        assert!(policy.spec.is_none());
        assert!(policy.metadata.annotations.is_none());
        assert_eq!(cached_spec_hash(&policy.metadata), Some(hash.as_str()));
        assert_eq!(policy.metadata.owner_references, owners);
        assert!(owners.is_some());
    }

    #[test]
    fn a_secret_keeps_no_copy_of_its_values() {
        let mut applied: PartialObjectMeta<k8s_openapi::api::core::v1::Secret> =
            serde_json::from_value(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "alpha-share", "namespace": "ns", "resourceVersion": "7",
                    "labels": {"team": "a"},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                        "{\"data\":{\"keystore-0.json\":\"c2VjcmV0\"}}"}},
            }))
            .unwrap();
        secret(&mut applied);
        assert!(applied.metadata.annotations.is_none() && applied.metadata.labels.is_none());
        assert_eq!(
            (
                applied.metadata.name.as_deref(),
                applied.metadata.resource_version.as_deref()
            ),
            (Some("alpha-share"), Some("7"))
        );
    }

    #[test]
    fn nodes_keep_zones_taints_and_readiness() {
        let mut whole: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}, "annotations": {"big": "x"}},
            "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}], "podCIDR": "10.0.0.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "images": [{"names": ["a"], "sizeBytes": 1}]},
        }))
        .unwrap();
        let whole_pod: cached::Pod =
            serde_json::from_value(json!({"spec": {"nodeName": "node-1", "containers": []}}))
                .unwrap();
        let before = format!("{:?}", health::node_health(&whole_pod, Some(&whole)));
        node(&mut whole);
        assert_eq!(
            format!("{:?}", health::node_health(&whole_pod, Some(&whole))),
            before
        );
        assert_eq!(before, "Gone");
        assert!(whole.status.as_ref().unwrap().images.is_none());
        assert_eq!(
            whole.metadata.labels.as_ref().unwrap()["topology.kubernetes.io/zone"],
            "zone-a"
        );
    }
}
