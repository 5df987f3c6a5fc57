//! The StatefulSet controller's decision, pure: from a StatefulSet, its pods, revisions and
//! claims, what to create, delete and report. It follows the real controller where the operator
//! depends on it: pod names `<set>-<ordinal>`, `controller-revision-hash` labels,
//! ControllerRevisions, PVCs from `volumeClaimTemplates` (with the retention policy),
//! `OrderedReady` and `Parallel` pod management, `OnDelete` and `RollingUpdate` (with
//! `partition`), and status counts with `currentRevision`/`updateRevision`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// What the controller does next for one StatefulSet.
#[derive(Debug, Default)]
pub struct Plan {
    pub create_revision: Option<ControllerRevision>,
    pub create_claims: Vec<PersistentVolumeClaim>,
    pub create_pods: Vec<Pod>,
    /// Pods to delete (gracefully), by name.
    pub delete_pods: Vec<String>,
    pub status: StatefulSetStatus,
}

/// A stable hash of the pod template: the revision's name suffix.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    // FNV-1a over the canonical JSON (serde_json maps are sorted), so equal templates hash
    // equally across runs and processes.
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Kubernetes uses safe-encoded 32-bit hashes; a 10-character lowercase form reads alike.
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| alphabet[((hash >> (i * 6)) % alphabet.len() as u64) as usize] as char)
        .collect()
}

pub fn owner_reference(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.metadata.name.clone().unwrap_or_default(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    pod_name
        .strip_prefix(set_name)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && !is_terminating(pod)
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// The template a revision recorded.
fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    serde_json::from_value(data.0.pointer("/spec/template")?.clone()).ok()
}

fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The pod for `ordinal` from `template` at `revision`.
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let spec = set.spec.clone().unwrap_or_default();
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), revision.to_owned());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    let mut volumes = pod_spec.volumes.take().unwrap_or_default();
    for claim in spec.volume_claim_templates.iter().flatten() {
        let claim_template = claim.metadata.name.clone().unwrap_or_default();
        if volumes.iter().any(|v| v.name == claim_template) {
            continue;
        }
        volumes.push(Volume {
            name: claim_template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&claim_template, &set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    pod_spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![owner_reference(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// Plans one pass for `set`. `pods` and `claims` are the set's namespace's (filtered here),
/// `revisions` the set's own.
#[cfg(test)]
pub fn plan(
    set: &StatefulSet,
    pods: &[&Pod],
    claims: &BTreeSet<String>,
    revisions: &[&ControllerRevision],
) -> Plan {
    let hash = template_hash(&set.spec.clone().unwrap_or_default().template);
    plan_with_hash(set, &hash, pods, claims, revisions)
}

/// [`plan`], given the [`template_hash`] of the set's template (the caller keeps it while the
/// set's generation stays: hashing it on every plan was a sixth of the simulator's time).
pub fn plan_with_hash(
    set: &StatefulSet,
    hash: &str,
    pods: &[&Pod],
    claims: &BTreeSet<String>,
    revisions: &[&ControllerRevision],
) -> Plan {
    let mut plan = Plan::default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let no_spec = StatefulSetSpec::default();
    let spec = set.spec.as_ref().unwrap_or(&no_spec);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let update_revision = format!("{set_name}-{hash}");

    // Revisions: the current template's, created when missing. A revision's template is
    // decoded only when a pod is made from it (decoding them all on every plan was most of the
    // simulator's StatefulSet pass).
    let by_name: BTreeMap<&str, &ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            r.data
                .as_ref()
                .is_some_and(|d| d.0.pointer("/spec/template").is_some())
        })
        .filter_map(|r| Some((r.metadata.name.as_deref()?, *r)))
        .collect();
    if !by_name.contains_key(update_revision.as_str()) {
        let number = revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert("controller.kubernetes.io/hash".into(), hash.to_owned());
        plan.create_revision = Some(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(update_revision.clone()),
                namespace: set.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![owner_reference(set)]),
                ..ObjectMeta::default()
            },
            revision: number,
            data: Some(RawExtension(json!({"spec": {"template": spec.template}}))),
        });
    }
    let current_revision = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .filter(|r| *r == update_revision || by_name.contains_key(r.as_str()))
        .unwrap_or_else(|| update_revision.clone());

    let by_ordinal: BTreeMap<i32, &Pod> = pods
        .iter()
        .filter_map(|p| Some((ordinal_of(&set_name, p.metadata.name.as_deref()?)?, *p)))
        .collect();
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let no_strategy = StatefulSetUpdateStrategy::default();
    let strategy = spec.update_strategy.as_ref().unwrap_or(&no_strategy);
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0);

    // Claims for every ordinal that should exist, before its pod.
    for ordinal in 0..replicas {
        for template in spec.volume_claim_templates.iter().flatten() {
            let template_name = template.metadata.name.clone().unwrap_or_default();
            let name = claim_name(&template_name, &set_name, ordinal);
            if claims.contains(&name) {
                continue;
            }
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            for (k, v) in spec.selector.match_labels.iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            let delete_with_set = spec
                .persistent_volume_claim_retention_policy
                .as_ref()
                .and_then(|p| p.when_deleted.as_deref())
                == Some("Delete");
            plan.create_claims.push(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: delete_with_set.then(|| vec![owner_reference(set)]),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            });
        }
    }

    // Create missing pods; replace finished ones.
    let mut blocked = false;
    for ordinal in 0..replicas {
        match by_ordinal.get(&ordinal) {
            Some(pod) if is_finished(pod) && !is_terminating(pod) => {
                plan.delete_pods
                    .push(pod.metadata.name.clone().unwrap_or_default());
                blocked = true;
            }
            Some(pod) => {
                if ordered && !is_running_and_ready(pod) {
                    blocked = true;
                }
            }
            None if ordered && blocked => {}
            None => {
                let revision = if rolling && ordinal < partition {
                    &current_revision
                } else {
                    &update_revision
                };
                // The update revision's template is the set's own (its name is the hash).
                let recorded = (*revision != update_revision)
                    .then(|| by_name.get(revision.as_str()).and_then(|r| template_of(r)))
                    .flatten();
                let template = recorded.as_ref().unwrap_or(&spec.template);
                plan.create_pods
                    .push(new_pod(set, template, revision, ordinal));
                if ordered {
                    blocked = true;
                }
            }
        }
    }

    // Scale down: highest ordinal first, one at a time when ordered.
    let surplus: Vec<&Pod> = by_ordinal
        .range(replicas..)
        .rev()
        .map(|(_, p)| *p)
        .filter(|p| !is_terminating(p))
        .collect();
    for pod in surplus.iter().take(if ordered { 1 } else { usize::MAX }) {
        plan.delete_pods
            .push(pod.metadata.name.clone().unwrap_or_default());
    }

    // Rolling update: one outdated pod at a time, highest ordinal first, only while every
    // other pod is running and ready.
    let all_present_and_ready =
        (0..replicas).all(|o| by_ordinal.get(&o).is_some_and(|p| is_running_and_ready(p)));
    if rolling
        && all_present_and_ready
        && plan.delete_pods.is_empty()
        && let Some(outdated) = (partition.max(0)..replicas)
            .rev()
            .filter_map(|o| by_ordinal.get(&o))
            .find(|p| revision_of(p) != Some(update_revision.as_str()))
    {
        plan.delete_pods
            .push(outdated.metadata.name.clone().unwrap_or_default());
    }

    // Status, from what exists now.
    let live: Vec<&Pod> = by_ordinal
        .range(0..replicas)
        .map(|(_, p)| *p)
        .filter(|p| !is_terminating(p))
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let updated = count(&|p| revision_of(p) == Some(update_revision.as_str()));
    let current = count(&|p| revision_of(p) == Some(current_revision.as_str()));
    let ready = count(&is_running_and_ready);
    let rollout_done = updated == replicas && ready == replicas;
    plan.status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: live.len() as i32,
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(if rollout_done { updated } else { current }),
        updated_replicas: Some(updated),
        current_revision: Some(if rollout_done {
            update_revision.clone()
        } else {
            current_revision
        }),
        update_revision: Some(update_revision),
        collision_count: Some(0),
        conditions: None,
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(strategy: &str, image: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "dv-alpha", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {
                "replicas": 1,
                "serviceName": "dv-alpha",
                "selector": {"matchLabels": {"app": "x"}},
                "updateStrategy": {"type": strategy},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            }
        }))
        .unwrap()
    }

    fn ready(mut pod: Pod) -> Pod {
        pod.status = Some(
            serde_json::from_value(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
            )
            .unwrap(),
        );
        pod
    }

    #[test]
    fn a_new_set_gets_a_revision_a_claim_and_a_pod_that_mounts_it() {
        let set = set("OnDelete", "img:1");
        let plan = plan(&set, &[], &BTreeSet::new(), &[]);
        let revision = plan.create_revision.unwrap();
        assert_eq!(revision.revision, 1);
        assert_eq!(
            plan.create_claims[0].metadata.name.as_deref(),
            Some("data-dv-alpha-0")
        );
        let pod = &plan.create_pods[0];
        assert_eq!(pod.metadata.name.as_deref(), Some("dv-alpha-0"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        // Pods carry the revision's full name, as the real controller labels them.
        assert_eq!(
            &labels[REVISION_LABEL],
            revision.metadata.name.as_ref().unwrap()
        );
        let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-dv-alpha-0"
        );
        assert_eq!(
            pod.spec.as_ref().unwrap().subdomain.as_deref(),
            Some("dv-alpha")
        );
    }

    fn settled(strategy: &str, old_image: &str, new_image: &str) -> Plan {
        let old = set(strategy, old_image);
        let first = plan(&old, &[], &BTreeSet::new(), &[]);
        let mut revision = first.create_revision.unwrap();
        revision.metadata.name = Some(format!(
            "dv-alpha-{}",
            template_hash(&old.spec.as_ref().unwrap().template)
        ));
        let pod = ready(first.create_pods[0].clone());
        let mut new = set(strategy, new_image);
        new.status = Some(first.status.clone());
        let claims: BTreeSet<String> = ["data-dv-alpha-0".to_owned()].into();
        plan(&new, &[&pod], &claims, &[&revision])
    }

    #[test]
    fn on_delete_keeps_the_old_pod_after_a_template_change() {
        let plan = settled("OnDelete", "img:1", "img:2");
        assert!(
            plan.create_revision.is_some(),
            "the new template gets a revision"
        );
        assert!(plan.delete_pods.is_empty());
        assert!(plan.create_pods.is_empty());
        assert_eq!(plan.status.updated_replicas, Some(0));
        assert_ne!(plan.status.current_revision, plan.status.update_revision);
    }

    #[test]
    fn rolling_update_replaces_the_outdated_pod() {
        let plan = settled("RollingUpdate", "img:1", "img:2");
        assert_eq!(plan.delete_pods, ["dv-alpha-0"]);
    }

    #[test]
    fn an_unchanged_set_plans_nothing() {
        let plan = settled("RollingUpdate", "img:1", "img:1");
        assert!(plan.create_revision.is_none());
        assert!(
            plan.delete_pods.is_empty()
                && plan.create_pods.is_empty()
                && plan.create_claims.is_empty()
        );
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.current_revision, plan.status.update_revision);
    }

    #[test]
    fn template_hashes_are_stable_and_differ_by_content() {
        let a = set("OnDelete", "img:1").spec.unwrap().template;
        let b = set("OnDelete", "img:2").spec.unwrap().template;
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
    }
}
