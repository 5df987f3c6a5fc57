//! Tests of the built-in kinds' validation, with kube-apiserver's messages.

use super::*;
use crate::registry::Registry;
use serde_json::json;

fn rt(group: &str, plural: &str) -> ResourceType {
    let version = "v1";
    (*Registry::builtin()
        .get(group, version, plural)
        .expect("built in"))
    .clone()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn fields(causes: &[Cause]) -> Vec<String> {
    causes.iter().map(|(f, m)| format!("{f}: {m}")).collect()
}

#[test]
fn a_good_pod_passes() {
    let spec = json!({"containers": [{"name": "charon", "image": "obolnetwork/charon:v1.7.1",
        "ports": [{"name": "p2p-tcp", "containerPort": 3610}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 3620}}}],
        "volumes": [{"name": "data", "emptyDir": {}}]});
    assert_eq!(
        validate(&rt("", "pods"), &pod(spec), None),
        Vec::<Cause>::new()
    );
}

#[test]
fn a_port_name_longer_than_15_characters_is_refused() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "ports": [{"name": "validator-metrics", "containerPort": 1}]}]});
    assert_eq!(
        fields(&validate(&rt("", "pods"), &pod(spec), None)),
        [
            "spec.containers[0].ports[0].name: Invalid value: \"validator-metrics\": must be no more than 15 characters"
        ]
    );
}

#[test]
fn a_volume_mount_without_a_volume_is_refused() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "keys", "mountPath": "/k"}]}]});
    assert_eq!(
        fields(&validate(&rt("", "pods"), &pod(spec), None)),
        ["spec.containers[0].volumeMounts[0].name: Not found: \"keys\""]
    );
}

#[test]
fn two_containers_with_one_name_are_refused() {
    let spec = json!({"initContainers": [{"name": "c", "image": "i"}], "containers": [{"name": "c", "image": "i"}]});
    assert_eq!(
        fields(&validate(&rt("", "pods"), &pod(spec), None)),
        ["spec.containers[0].name: Duplicate value: \"c\""]
    );
}

#[test]
fn a_probe_with_two_handlers_is_refused() {
    let spec = json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}}}]});
    assert_eq!(
        fields(&validate(&rt("", "pods"), &pod(spec), None)),
        ["spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type"]
    );
}

#[test]
fn a_label_value_over_63_characters_is_refused() {
    let long = "a".repeat(64);
    let object = json!({"metadata": {"name": "s", "labels": {"dvt.io/dv": long}}, "data": {}});
    assert_eq!(
        fields(&validate(&rt("", "configmaps"), &object, None)),
        [format!(
            "metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters"
        )]
    );
}

#[test]
fn a_statefulset_takes_changes_of_its_template_but_not_of_its_claims() {
    let sts = |size: &str, image: &str| {
        json!({"metadata": {"name": "m"}, "spec": {"replicas": 1, "serviceName": "m",
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": image, "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": size}}}}]}})
    };
    let rt = rt("apps", "statefulsets");
    assert!(validate(&rt, &sts("1Gi", "new"), Some(&sts("1Gi", "old"))).is_empty());
    assert_eq!(
        fields(&validate(&rt, &sts("2Gi", "old"), Some(&sts("1Gi", "old")))),
        [
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
}

#[test]
fn a_claim_grows_but_never_shrinks_and_keeps_its_class() {
    let pvc = |size: &str, class: &str| json!({"metadata": {"name": "c"}, "spec": {"storageClassName": class, "volumeName": "pv-1", "resources": {"requests": {"storage": size}}}});
    let rt = rt("", "persistentvolumeclaims");
    assert!(validate(&rt, &pvc("2Gi", "standard"), Some(&pvc("1Gi", "standard"))).is_empty());
    assert_eq!(
        fields(&validate(
            &rt,
            &pvc("512Mi", "standard"),
            Some(&pvc("1Gi", "standard"))
        )),
        ["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
    );
    assert_eq!(
        validate(&rt, &pvc("1Gi", "fast"), Some(&pvc("1Gi", "standard"))).len(),
        1
    );
}

#[test]
fn an_immutable_secret_keeps_its_data() {
    let secret = |v: &str| json!({"metadata": {"name": "s"}, "immutable": true, "data": {"k": v}});
    assert_eq!(
        fields(&validate(
            &rt("", "secrets"),
            &secret("Yg=="),
            Some(&secret("YQ=="))
        )),
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );
}

#[test]
fn a_pod_update_may_change_images_but_not_the_node_or_the_commands() {
    let p = |image: &str, node: Option<&str>, command: &str| {
        let mut spec = json!({"containers": [{"name": "c", "image": image, "command": [command]}]});
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        pod(spec)
    };
    let rt = rt("", "pods");
    assert!(validate(&rt, &p("new", None, "run"), Some(&p("old", None, "run"))).is_empty());
    for changed in [p("old", Some("n1"), "run"), p("old", None, "other")] {
        assert_eq!(
            fields(&validate(&rt, &changed, Some(&p("old", None, "run")))),
            [format!(
                "spec: Forbidden: pod updates may not change fields other than {}",
                POD_UPDATABLE.join(",")
            )]
        );
    }
}

#[test]
fn a_services_cluster_ip_never_changes() {
    let service = |ip: &str| json!({"metadata": {"name": "s"}, "spec": {"clusterIP": ip}});
    assert_eq!(
        fields(&validate(
            &rt("", "services"),
            &service("10.0.0.2"),
            Some(&service("None"))
        )),
        ["spec.clusterIPs[0]: Invalid value: \"10.0.0.2\": may not change once set"]
    );
    assert!(
        validate(
            &rt("", "services"),
            &service("None"),
            Some(&service("None"))
        )
        .is_empty()
    );
}

#[test]
fn a_budget_names_one_bound() {
    let pdb = json!({"metadata": {"name": "b"}, "spec": {"minAvailable": 3, "maxUnavailable": 1}});
    assert_eq!(
        fields(&validate(&rt("policy", "poddisruptionbudgets"), &pdb, None)),
        [
            "spec: Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both set"
        ]
    );
}

#[test]
fn data_keys_and_size_are_limited() {
    let object = json!({"metadata": {"name": "c"}, "data": {"a/b": "x"}});
    assert_eq!(validate(&rt("", "configmaps"), &object, None).len(), 1);
    let big = "a".repeat(MAX_DATA_BYTES + 1);
    let object = json!({"metadata": {"name": "c"}, "data": {"k": big}});
    assert_eq!(
        fields(&validate(&rt("", "configmaps"), &object, None)),
        ["[]: Too long: may not be more than 1048576 bytes"]
    );
}

#[test]
fn quantities_read_as_bytes() {
    assert_eq!(quantity_bytes("1Gi"), Some(1024f64.powi(3)));
    assert_eq!(quantity_bytes("500M"), Some(5e8));
    assert_eq!(quantity_bytes("bogus"), None);
}
