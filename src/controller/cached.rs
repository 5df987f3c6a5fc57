//! The shapes in which the pod and StatefulSet caches hold objects: only the fields a reconcile
//! reads, decoded straight from the watch.
//!
//! k8s-openapi's `Pod` is 2,176 bytes and its `StatefulSet` 2,536 bytes before anything is
//! set (every optional field of the spec has its place), and each `ContainerStatus` 752: at a
//! thousand DVs that was about 35 MB of the caches, with the specs already trimmed away. These
//! types keep the same field names and nesting as the API types, so a reader reads
//! `pod.status.conditions` whichever it holds, and a watch decodes into them directly (the
//! fields not named here are never decoded). [`crate::controller::trim`] then drops what is
//! decoded but not read.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::api::core::v1::{ContainerState, PersistentVolumeClaim, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::{NamespaceResourceScope, Resource as _};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// A member pod as the pod cache holds it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default, deserialize_with = "metadata_without_managed_fields")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

/// Of a pod's spec: the node it is bound to.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
}

/// Of a pod's status: what decides its health and where its Charon listens.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub conditions: Option<Vec<PodCondition>>,
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
}

/// Of a container's status: readiness, restarts and states (not images, ids or resources).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i32,
    pub started: Option<bool>,
    pub state: Option<ContainerState>,
    pub last_state: Option<ContainerState>,
}

/// A member StatefulSet as the StatefulSet cache holds it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSet {
    #[serde(default, deserialize_with = "metadata_with_others_managed_fields")]
    pub metadata: ObjectMeta,
    /// Only until trimmed: the claim templates are then kept compactly in an annotation
    /// ([`crate::controller::trim::CACHED_CLAIMS`]).
    pub spec: Option<StatefulSetSpec>,
    pub status: Option<StatefulSetStatus>,
}

/// Of a StatefulSet's spec: its claim templates, which cannot change, and its replicas (read
/// once, when trimmed: see [`crate::controller::trim::statefulset`]).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpec {
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
    pub replicas: Option<i32>,
}

/// An object's metadata as the API sends it, every field of [`ObjectMeta`] but its managed
/// fields, which decode as `F` says. Decoding the managed fields whole took about 4 % of the
/// operator's CPU at a thousand DVs (a perf profile at niceness 0): every StatefulSet event
/// carries the operator's own entry, the field set of a whole pod template, as a tree of JSON
/// maps that the cache then dropped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta<F> {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    managed_fields: Option<F>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl<F> WireMeta<F> {
    fn into_meta(self, managed_fields: Option<Vec<ManagedFieldsEntry>>) -> ObjectMeta {
        let WireMeta {
            annotations,
            creation_timestamp,
            deletion_grace_period_seconds,
            deletion_timestamp,
            finalizers,
            generate_name,
            generation,
            labels,
            managed_fields: _,
            name,
            namespace,
            owner_references,
            resource_version,
            self_link,
            uid,
        } = self;
        ObjectMeta {
            annotations,
            creation_timestamp,
            deletion_grace_period_seconds,
            deletion_timestamp,
            finalizers,
            generate_name,
            generation,
            labels,
            managed_fields,
            name,
            namespace,
            owner_references,
            resource_version,
            self_link,
            uid,
        }
    }
}

/// A pod's metadata without its managed fields (nothing reads who wrote a pod's fields); they
/// are skipped as text, never decoded.
fn metadata_without_managed_fields<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ObjectMeta, D::Error> {
    let wire = WireMeta::<IgnoredAny>::deserialize(deserializer)?;
    Ok(wire.into_meta(None))
}

/// A child's metadata with only the managed-fields entries drift detection reads (other
/// writers' of the main resource, [`crate::controller::drift::kept_entry`]); the operator's own
/// entry is skipped as text.
fn metadata_with_others_managed_fields<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ObjectMeta, D::Error> {
    let mut wire = WireMeta::<Vec<KeptEntry>>::deserialize(deserializer)?;
    let kept: Vec<ManagedFieldsEntry> = wire
        .managed_fields
        .take()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.0)
        .collect();
    Ok(wire.into_meta((!kept.is_empty()).then_some(kept)))
}

/// One managed-fields entry, decoded only if a cache keeps it. The field set is decoded unless
/// the entry is already known to be the operator's own: kube-apiserver writes `manager` before
/// `fieldsV1`, so the operator's entry, the largest, is skipped; in any other order the field
/// set is decoded and the entry judged once whole.
struct KeptEntry(Option<ManagedFieldsEntry>);

impl<'de> Deserialize<'de> for KeptEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        enum Key {
            #[serde(rename = "manager")]
            Manager,
            #[serde(rename = "subresource")]
            Subresource,
            #[serde(rename = "fieldsV1")]
            FieldsV1,
            #[serde(other)]
            Other,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeptEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a managed fields entry")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeptEntry, A::Error> {
                let ours = crate::controller::names::FIELD_MANAGER;
                let mut manager: Option<String> = None;
                let mut subresource: Option<String> = None;
                let mut fields: Option<FieldsV1> = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Manager => manager = map.next_value()?,
                        Key::Subresource => subresource = map.next_value()?,
                        Key::FieldsV1 if manager.as_deref() == Some(ours) => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        Key::FieldsV1 => fields = map.next_value()?,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(KeptEntry(crate::controller::drift::kept_entry(
                    manager,
                    subresource,
                    fields,
                    ours,
                )))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// kube-rs reads a cached type's group, version, kind and plural through `kube::Resource`; these
/// are the API types', taken from k8s-openapi rather than spelled again.
macro_rules! resource_as {
    ($cached:ty, $api:ty) => {
        impl kube::Resource for $cached {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                <$api>::KIND.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                <$api>::GROUP.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                <$api>::VERSION.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                <$api>::URL_PATH_SEGMENT.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource_as!(Pod, k8s_openapi::api::core::v1::Pod);
resource_as!(StatefulSet, k8s_openapi::api::apps::v1::StatefulSet);

/// A whole API object in a cached shape, as a watch would decode it (tests build API objects
/// and judge them as the caches hold them).
#[cfg(test)]
pub fn from_api<T: serde::Serialize, C: serde::de::DeserializeOwned>(
    object: &T,
) -> Result<C, serde_json::Error> {
    serde_json::to_value(object).and_then(serde_json::from_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the readers use, under its API name: a misspelt rename would decode as
    /// absent and judge every member wrongly, trimmed or not.
    #[test]
    fn a_pod_decodes_every_field_read_under_its_api_name() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "m-0", "namespace": "ns", "deletionTimestamp": "2027-01-15T08:00:00Z"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "charon", "image": "x"}]},
            "status": {
                "phase": "Pending",
                "reason": "Evicted",
                "message": "low on memory",
                "podIP": "10.0.0.7",
                "hostIP": "10.1.0.1",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2027-01-15T07:59:00Z"}],
                "containerStatuses": [{
                    "name": "charon", "ready": true, "restartCount": 2, "started": true, "image": "x",
                    "imageID": "sha256:1", "state": {"waiting": {"reason": "CrashLoopBackOff"}}
                }],
                "initContainerStatuses": [{
                    "name": "copy-enr-key", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
                }]
            }
        }))
        .expect("a pod decodes");
        assert!(pod.metadata.deletion_timestamp.is_some());
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("node-1")
        );
        let status = pod.status.as_ref().expect("status decoded");
        assert_eq!(
            (
                status.phase.as_deref(),
                status.reason.as_deref(),
                status.message.as_deref(),
                status.pod_ip.as_deref()
            ),
            (
                Some("Pending"),
                Some("Evicted"),
                Some("low on memory"),
                Some("10.0.0.7")
            )
        );
        let ready = &status.conditions.as_ref().expect("conditions decoded")[0];
        assert!(ready.type_ == "Ready" && ready.last_transition_time.is_some());
        let container = &status
            .container_statuses
            .as_ref()
            .expect("containers decoded")[0];
        assert_eq!(
            (
                container.name.as_str(),
                container.ready,
                container.restart_count,
                container.started
            ),
            ("charon", true, 2, Some(true))
        );
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        assert_eq!(
            waiting.and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        let init = &status
            .init_container_statuses
            .as_ref()
            .expect("init containers decoded")[0];
        let terminated = init.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        assert_eq!(
            (
                init.restart_count,
                terminated.and_then(|t| t.reason.as_deref())
            ),
            (4, Some("OOMKilled"))
        );
        assert!(
            std::mem::size_of::<Pod>() < std::mem::size_of::<k8s_openapi::api::core::v1::Pod>() / 3
        );
    }

    #[test]
    fn a_statefulset_decodes_its_claim_templates_and_status() {
        let set: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "m", "annotations": {"dvt.io/spec-hash": "h"}},
            "spec": {
                "replicas": 1,
                "template": {"spec": {"containers": [{"name": "charon", "image": "x"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "charon-data"},
                    "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]
            },
            "status": {"replicas": 1, "updateRevision": "m-2", "currentRevision": "m-1"}
        }))
        .expect("a StatefulSet decodes");
        let templates = set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
            .expect("claim templates decoded");
        assert_eq!(templates[0].metadata.name.as_deref(), Some("charon-data"));
        assert_eq!(
            set.status
                .as_ref()
                .and_then(|s| s.update_revision.as_deref()),
            Some("m-2")
        );
    }

    #[test]
    fn the_cached_types_name_the_api_resources() {
        use kube::Resource;
        assert_eq!(Pod::kind(&()), "Pod");
        assert_eq!(Pod::api_version(&()), "v1");
        assert_eq!(Pod::plural(&()), "pods");
        assert_eq!(StatefulSet::api_version(&()), "apps/v1");
        assert_eq!(StatefulSet::plural(&()), "statefulsets");
    }

    /// Metadata with every field of `ObjectMeta` set: written without `..Default::default()`,
    /// so a field k8s-openapi adds stops this test from compiling until [`WireMeta`] has it.
    fn every_metadata_field() -> ObjectMeta {
        let time = |text: &str| serde_json::from_value::<Time>(serde_json::json!(text)).unwrap();
        ObjectMeta {
            annotations: Some([("a".to_owned(), "1".to_owned())].into()),
            creation_timestamp: Some(time("2027-01-15T07:00:00Z")),
            deletion_grace_period_seconds: Some(30),
            deletion_timestamp: Some(time("2027-01-15T08:00:00Z")),
            finalizers: Some(vec!["example.com/keep".to_owned()]),
            generate_name: Some("m-".to_owned()),
            generation: Some(3),
            labels: Some([("dvt.io/dv".to_owned(), "dv-a".to_owned())].into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".to_owned()),
                operation: Some("Update".to_owned()),
                api_version: Some("apps/v1".to_owned()),
                fields_type: Some("FieldsV1".to_owned()),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
                subresource: None,
                time: Some(time("2027-01-15T07:30:00Z")),
            }]),
            name: Some("m-0".to_owned()),
            namespace: Some("ns".to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "dvt.io/v1alpha1".to_owned(),
                kind: "DistributedValidator".to_owned(),
                name: "dv-a".to_owned(),
                uid: "u-1".to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            resource_version: Some("42".to_owned()),
            self_link: Some("/apis/apps/v1/x".to_owned()),
            uid: Some("u-2".to_owned()),
        }
    }

    /// The cached types decode every metadata field as the API type does, but the managed
    /// fields: a pod keeps none, a StatefulSet other writers' entries as drift reads them.
    #[test]
    fn cached_metadata_is_the_api_metadata_but_the_managed_fields() {
        let meta = every_metadata_field();
        let object = serde_json::json!({"metadata": meta});
        let pod: Pod = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(
            pod.metadata,
            ObjectMeta {
                managed_fields: None,
                ..meta.clone()
            }
        );
        let set: StatefulSet = serde_json::from_value(object).unwrap();
        assert_eq!(
            set.metadata,
            ObjectMeta {
                managed_fields: crate::controller::drift::foreign_entries(
                    meta.managed_fields.clone(),
                    crate::controller::names::FIELD_MANAGER
                ),
                ..meta
            }
        );
        assert_eq!(
            set.metadata.managed_fields.as_ref().map(Vec::len),
            Some(1),
            "kubectl's entry is kept"
        );
    }

    /// Of a StatefulSet's managed fields only other writers' entries of the main resource are
    /// kept, in whatever order an entry's keys come; the operator's own field set is skipped.
    #[test]
    fn a_statefulset_keeps_only_other_writers_managed_fields() {
        let ours = crate::controller::names::FIELD_MANAGER;
        let own_fields =
            serde_json::json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}});
        let set: StatefulSet = serde_json::from_str(&format!(
            r#"{{"metadata": {{"name": "m", "managedFields": [
                {{"manager": "{ours}", "operation": "Apply", "apiVersion": "apps/v1",
                  "fieldsType": "FieldsV1", "fieldsV1": {own_fields}}},
                {{"fieldsV1": {own_fields}, "manager": "{ours}", "operation": "Apply"}},
                {{"manager": "kube-controller-manager", "operation": "Update",
                  "fieldsV1": {{"f:status": {{"f:replicas": {{}}}}}}, "subresource": "status"}},
                {{"manager": "kubectl", "operation": "Update", "time": "2027-01-15T07:30:00Z",
                  "fieldsType": "FieldsV1", "fieldsV1": {{"f:spec": {{"f:replicas": {{}}}}}}}},
                {{"manager": "kubectl-edit", "operation": "Update"}}
            ]}}}}"#
        ))
        .expect("a StatefulSet decodes");
        let kept = set.metadata.managed_fields.expect("kubectl's entry kept");
        assert_eq!(
            kept,
            vec![ManagedFieldsEntry {
                manager: Some("kubectl".to_owned()),
                fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
                ..ManagedFieldsEntry::default()
            }]
        );
        let only_ours: StatefulSet = serde_json::from_value(serde_json::json!({"metadata": {
            "name": "m",
            "managedFields": [{"manager": ours, "fieldsV1": own_fields}]
        }}))
        .unwrap();
        assert_eq!(only_ours.metadata.managed_fields, None);
    }
}
