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

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::api::core::v1::{ContainerState, PersistentVolumeClaim, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{NamespaceResourceScope, Resource as _};
use serde::Deserialize;

/// A member pod as the pod cache holds it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
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
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Only until trimmed: the claim templates are then kept compactly in an annotation
    /// ([`crate::controller::trim::CACHED_CLAIMS`]).
    pub spec: Option<StatefulSetSpec>,
    pub status: Option<StatefulSetStatus>,
}

/// Of a StatefulSet's spec: its claim templates, which cannot change.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpec {
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,
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
}
