//! Built-in kinds are validated as kube-apiserver validates them: through kube-rs, a bad object
//! and a change of an immutable field are refused with 422 and the server's message.

use dvt_sim::{SimOptions, SimServer};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn a_bad_pod_is_refused_with_the_servers_message() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(server.client().unwrap());
    let pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "i", "ports": [{"name": "validator-metrics", "containerPort": 8008}]}]}}))
    .unwrap();
    match pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert_eq!(
                status.message,
                "Pod \"p\" is invalid: spec.containers[0].ports[0].name: Invalid value: \"validator-metrics\": must be no more than 15 characters"
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

#[tokio::test]
async fn a_statefulsets_claim_templates_cannot_change() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(server.client().unwrap());
    let set = |size: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "m"}, "spec": {
            "serviceName": "m", "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}]}})
    };
    let params = PatchParams::apply("test").force();
    sets.patch("m", &params, &Patch::Apply(set("1Gi")))
        .await
        .unwrap();
    match sets.patch("m", &params, &Patch::Apply(set("2Gi"))).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert_eq!(
                status.message,
                "StatefulSet.apps \"m\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pod_is_placed_through_its_binding_not_by_an_update() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(server.client().unwrap());
    let pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let moved = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeName": "node-1"}})),
        )
        .await;
    match moved {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(status.message.starts_with("Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{}", status.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        "p",
        &PostParams::default(),
        &binding,
    )
    .await
    .expect("bound");
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-1")
    );
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            "p",
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert!(
                status
                    .message
                    .contains("pod p is already assigned to node \"node-1\""),
                "{}",
                status.message
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
}

/// A uid in a write is checked against the stored object: a PUT makes it a storage precondition
/// (409), a patch an immutable field (422). Clients rely on it to never touch an object that was
/// recreated under the same name since they read it.
#[tokio::test]
async fn a_write_naming_another_uid_is_refused() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(server.client().unwrap());
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    let stored = pods.create(&PostParams::default(), &pod).await.unwrap();
    let uid = stored.metadata.uid.clone().unwrap();
    let labelled = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"uid": uid, "labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.labels.unwrap()["a"], "b");

    match pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"uid": "stale", "labels": {"a": "c"}}})),
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert_eq!(
                status.message,
                "Pod \"p\" is invalid: metadata.uid: Invalid value: \"stale\": field is immutable"
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }

    let mut stale = pods.get("p").await.unwrap();
    stale.metadata.uid = Some("stale".to_owned());
    match pods.replace("p", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(
                status.message,
                format!(
                    "Operation cannot be fulfilled on pods \"p\": StorageError: invalid object, Code: 4, Key: /registry/pods/default/p, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: stale, UID in object meta: {uid}"
                )
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(
        pods.get("p").await.unwrap().metadata.labels.unwrap()["a"],
        "b"
    );
}
