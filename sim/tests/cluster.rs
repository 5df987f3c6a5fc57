//! The simulated cluster: StatefulSets become scheduled, running, ready pods; faults break them
//! the way real clusters break; the timeline records it all.

use std::time::Duration;

use dvt_sim::cluster::ReadinessRule;
use dvt_sim::cluster::faults::ApiFaults;
use dvt_sim::timeline::{Change, readiness_dips};
use dvt_sim::{ClusterOptions, Fault, SimOptions, SimServer};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

async fn start(options: ClusterOptions) -> (SimServer, Client) {
    let server = SimServer::start(SimOptions {
        cluster: Some(options),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts");
    let mut config = server.client_config().unwrap();
    // Evictions refused by a budget must come back at once, not after minutes of retries.
    config.default_retry = false;
    (server, Client::try_from(config).unwrap())
}

/// Polls `check` until it returns `Some`, or fails the test naming `what`.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn statefulset(name: &str, strategy: &str, image: &str, zone: Option<&str>) -> StatefulSet {
    let affinity = zone.map(|zone| json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}}}));
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": strategy},
            "template": {
                "metadata": {"labels": {"app": name, "dv": "test"}},
                "spec": {"affinity": affinity, "containers": [{"name": "charon", "image": image}]},
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        }
    }))
    .unwrap()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_pod(pods: &Api<Pod>, name: &str) -> Pod {
    let name = name.to_owned();
    wait_for(&format!("{name} ready"), || {
        let pods = pods.clone();
        let name = name.clone();
        async move { pods.get_opt(&name).await.ok().flatten().filter(is_ready) }
    })
    .await
}

/// Waits until `name` is a different pod than `old` (a new uid) and Ready.
async fn replaced_and_ready(pods: &Api<Pod>, name: &str, old: &Pod, what: &str) -> Pod {
    let old = old.uid();
    wait_for(what, || {
        let pods = pods.clone();
        let old = old.clone();
        async move {
            pods.get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(|p| p.uid() != old && is_ready(p))
        }
    })
    .await
}

fn zone_of(nodes: &[Node], node: &str) -> String {
    nodes
        .iter()
        .find(|n| n.name_any() == node)
        .and_then(|n| n.labels().get("topology.kubernetes.io/zone").cloned())
        .unwrap_or_default()
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_spread_over_zones_and_ready() {
    let (_server, client) = start(ClusterOptions {
        nodes: 8,
        zones: 4,
        ..ClusterOptions::fast()
    })
    .await;
    let nodes: Vec<Node> = wait_for("8 ready nodes", || {
        let api: Api<Node> = Api::all(client.clone());
        async move {
            let nodes = api.list(&ListParams::default()).await.ok()?.items;
            let ready = nodes.iter().all(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            (nodes.len() == 8 && ready).then_some(nodes)
        }
    })
    .await;
    let mut per_zone = std::collections::BTreeMap::<String, usize>::new();
    for node in &nodes {
        *per_zone
            .entry(zone_of(&nodes, &node.name_any()))
            .or_default() += 1;
        assert_eq!(node.labels()["kubernetes.io/hostname"], node.name_any());
        assert_eq!(
            node.status.as_ref().unwrap().allocatable.as_ref().unwrap()["cpu"].0,
            "8"
        );
    }
    assert_eq!(
        per_zone.into_iter().collect::<Vec<_>>(),
        [
            ("zone-a".into(), 2),
            ("zone-b".into(), 2),
            ("zone-c".into(), 2),
            ("zone-d".into(), 2)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_gets_a_ready_pod_in_the_zone_its_affinity_demands() {
    let (server, client) = start(ClusterOptions::fast()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    sets.create(
        &PostParams::default(),
        &statefulset("member", "OnDelete", "charon:1", Some("zone-c")),
    )
    .await
    .unwrap();
    let pod = ready_pod(&pods, "member-0").await;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(zone_of(&nodes, &node_of(&pod)), "zone-c");
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let container = &status.container_statuses.unwrap()[0];
    assert!(container.ready && container.state.as_ref().unwrap().running.is_some());
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );

    // The claim exists, is bound, and is now pinned to the pod's zone.
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let claim = claims.get("data-member-0").await.unwrap();
    assert_eq!(
        claim.status.as_ref().unwrap().phase.as_deref(),
        Some("Bound")
    );
    assert_eq!(claim.annotations()["dvt-sim.io/zone"], "zone-c");

    // The StatefulSet reports what a kubectl user expects.
    let set = wait_for("status counts", || {
        let sets = sets.clone();
        async move {
            sets.get("member")
                .await
                .ok()
                .filter(|s| s.status.as_ref().and_then(|s| s.ready_replicas) == Some(1))
        }
    })
    .await;
    let status = set.status.unwrap();
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(
        pod.metadata.labels.unwrap()["controller-revision-hash"],
        status.update_revision.unwrap()
    );

    // The timeline saw the scheduler bind it and the kubelet make it ready.
    let timeline = server.store().timeline();
    let writes_by = |actor: &str| {
        timeline.iter().any(|e| matches!(&e.change, Change::Write { actor: a, resource, name, .. } if a == actor && resource == "pods" && name == "member-0"))
    };
    assert!(
        writes_by("statefulset-controller")
            && writes_by("default-scheduler")
            && writes_by("kubelet")
    );
    assert!(timeline.iter().any(|e| matches!(&e.change, Change::Readiness { pod, ready: true, actor, .. } if pod == "member-0" && actor == "kubelet")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_waits_for_a_delete_and_rolling_update_replaces_the_pod() {
    let (_server, client) = start(ClusterOptions::fast()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let revisions: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    for (name, strategy) in [("ondelete", "OnDelete"), ("rolling", "RollingUpdate")] {
        sets.create(
            &PostParams::default(),
            &statefulset(name, strategy, "charon:1", None),
        )
        .await
        .unwrap();
    }
    let old_on_delete = ready_pod(&pods, "ondelete-0").await;
    let old_rolling = ready_pod(&pods, "rolling-0").await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "charon", "image": "charon:2"}]}}}});
    for name in ["ondelete", "rolling"] {
        sets.patch(name, &PatchParams::default(), &Patch::Strategic(&image))
            .await
            .unwrap();
    }

    // RollingUpdate: a new pod (new uid) at the new revision.
    let replaced =
        replaced_and_ready(&pods, "rolling-0", &old_rolling, "the rolling pod replaced").await;
    assert_eq!(
        replaced.spec.unwrap().containers[0].image.as_deref(),
        Some("charon:2")
    );

    // OnDelete: the new revision exists, but the old pod stays.
    wait_for("two revisions of ondelete", || {
        let revisions = revisions.clone();
        async move {
            let list = revisions.list(&ListParams::default()).await.ok()?;
            (list
                .items
                .iter()
                .filter(|r| r.name_any().starts_with("ondelete-"))
                .count()
                == 2)
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = pods.get("ondelete-0").await.unwrap();
    assert_eq!(still.uid(), old_on_delete.uid());
    assert_eq!(
        still.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("charon:1")
    );
    let set = sets.get("ondelete").await.unwrap().status.unwrap();
    assert_ne!(set.current_revision, set.update_revision);
    assert_eq!(set.updated_replicas, Some(0));

    // Deleting it brings the new revision.
    pods.delete("ondelete-0", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = replaced_and_ready(
        &pods,
        "ondelete-0",
        &old_on_delete,
        "ondelete pod recreated",
    )
    .await;
    assert_eq!(
        recreated.spec.unwrap().containers[0].image.as_deref(),
        Some("charon:2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pod_shows_the_reason_and_a_growing_restart_count() {
    let (server, client) = start(ClusterOptions::fast()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    sets.create(
        &PostParams::default(),
        &statefulset("crashy", "OnDelete", "charon:1", None),
    )
    .await
    .unwrap();
    ready_pod(&pods, "crashy-0").await;
    server
        .inject(Fault::CrashLoop {
            namespace: "default".into(),
            pod: "crashy-0".into(),
            container: None,
            oom: false,
        })
        .unwrap();
    let container = |pod: &Pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|c| c[0].clone())
    };
    let first = wait_for("CrashLoopBackOff", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("crashy-0").await.ok()?;
            let status = container(&pod)?;
            let waiting = status.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
            (waiting == "CrashLoopBackOff" && status.restart_count >= 1)
                .then_some(status.restart_count)
        }
    })
    .await;
    let pod = pods.get("crashy-0").await.unwrap();
    assert!(!is_ready(&pod));
    let last = container(&pod)
        .unwrap()
        .last_state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    wait_for("a growing restart count", || {
        let pods = pods.clone();
        async move {
            pods.get("crashy-0")
                .await
                .ok()
                .and_then(|p| container(&p))
                .filter(|c| c.restart_count >= first + 2)
        }
    })
    .await;

    // Healing ends the loop: the pod becomes ready again.
    server
        .inject(Fault::Heal {
            namespace: "default".into(),
            pod: "crashy-0".into(),
        })
        .unwrap();
    ready_pod(&pods, "crashy-0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_and_unready_faults_show_as_kubernetes_shows_them() {
    let (server, client) = start(ClusterOptions::fast()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    server
        .inject(Fault::BadImage {
            image: "charon:broken".into(),
        })
        .unwrap();
    sets.create(
        &PostParams::default(),
        &statefulset("pull", "OnDelete", "charon:broken", None),
    )
    .await
    .unwrap();
    sets.create(
        &PostParams::default(),
        &statefulset("lazy", "OnDelete", "charon:1", None),
    )
    .await
    .unwrap();
    wait_for("ImagePullBackOff", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get_opt("pull-0").await.ok()??;
            let status = pod.status?;
            let reason = status.container_statuses?[0]
                .state
                .clone()?
                .waiting?
                .reason?;
            (reason == "ImagePullBackOff" && status.phase.as_deref() == Some("Pending"))
                .then_some(())
        }
    })
    .await;
    server
        .inject(Fault::FixImage {
            image: "charon:broken".into(),
        })
        .unwrap();
    ready_pod(&pods, "pull-0").await;

    ready_pod(&pods, "lazy-0").await;
    server
        .inject(Fault::Unready {
            namespace: "default".into(),
            pod: "lazy-0".into(),
        })
        .unwrap();
    wait_for("lazy-0 unready but running", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("lazy-0").await.ok()?;
            (!is_ready(&pod) && pod.status.as_ref()?.phase.as_deref() == Some("Running"))
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_zone_leaves_its_pods_bound_and_unready_until_restored() {
    let (server, client) = start(ClusterOptions::fast()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    sets.create(
        &PostParams::default(),
        &statefulset("east", "OnDelete", "charon:1", Some("zone-b")),
    )
    .await
    .unwrap();
    let before = ready_pod(&pods, "east-0").await;
    let node = node_of(&before);

    server
        .inject(Fault::FailZone {
            zone: "zone-b".into(),
        })
        .unwrap();
    let unready = wait_for("east-0 unready", || {
        let pods = pods.clone();
        async move { pods.get("east-0").await.ok().filter(|p| !is_ready(p)) }
    })
    .await;
    assert_eq!(unready.uid(), before.uid(), "the same pod");
    assert_eq!(node_of(&unready), node, "still bound to its node");
    let failed_node = nodes_api.get(&node).await.unwrap();
    let ready_condition = failed_node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready_condition.status, "Unknown");
    let taints = failed_node.spec.unwrap().taints.unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
    );

    // Deleting the pod does not remove it while its kubelet is unreachable...
    pods.delete("east-0", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let terminating = pods.get("east-0").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.uid(), before.uid());

    // ...until the zone comes back: the kubelet confirms, and the controller recreates it.
    server
        .inject(Fault::RestoreZone {
            zone: "zone-b".into(),
        })
        .unwrap();
    let recreated =
        replaced_and_ready(&pods, "east-0", &before, "east-0 recreated and ready").await;
    let nodes = nodes_api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(zone_of(&nodes, &node_of(&recreated)), "zone-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_service_node_releases_its_pods_and_volumes_keep_them_in_their_zone() {
    let (server, client) = start(ClusterOptions {
        nodes: 4,
        zones: 2,
        ..ClusterOptions::fast()
    })
    .await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    // No zone affinity: only the volume keeps the pod in its zone.
    sets.create(
        &PostParams::default(),
        &statefulset("free", "OnDelete", "charon:1", None),
    )
    .await
    .unwrap();
    let before = ready_pod(&pods, "free-0").await;
    let node = node_of(&before);
    let nodes = nodes_api.list(&ListParams::default()).await.unwrap().items;
    let zone = zone_of(&nodes, &node);
    server
        .inject(Fault::FailNode { node: node.clone() })
        .unwrap();
    wait_for("free-0 unready", || {
        let pods = pods.clone();
        async move { pods.get("free-0").await.ok().filter(|p| !is_ready(p)) }
    })
    .await;
    let taint = json!({"spec": {"taints": [
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"},
    ]}});
    nodes_api
        .patch(&node, &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    let moved = replaced_and_ready(&pods, "free-0", &before, "free-0 recreated elsewhere").await;
    assert_ne!(node_of(&moved), node);
    assert_eq!(
        zone_of(&nodes, &node_of(&moved)),
        zone,
        "the volume keeps the pod in its zone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_disruption_budget_status_is_kept_and_evictions_beyond_it_are_refused() {
    let (server, client) = start(ClusterOptions::fast()).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let budgets: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    for name in ["m0", "m1", "m2"] {
        sets.create(
            &PostParams::default(),
            &statefulset(name, "OnDelete", "charon:1", None),
        )
        .await
        .unwrap();
    }
    for name in ["m0-0", "m1-0", "m2-0"] {
        ready_pod(&pods, name).await;
    }
    let budget: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "dv"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"dv": "test"}}}})).unwrap();
    budgets
        .create(&PostParams::default(), &budget)
        .await
        .unwrap();
    wait_for("budget status", || {
        let budgets = budgets.clone();
        async move {
            let status = budgets.get("dv").await.ok()?.status?;
            (status.current_healthy == 3
                && status.desired_healthy == 2
                && status.disruptions_allowed == 1
                && status.expected_pods == 3)
                .then_some(())
        }
    })
    .await;
    pods.evict("m0-0", &kube::api::EvictParams::default())
        .await
        .unwrap();
    let refused = pods
        .evict("m1-0", &kube::api::EvictParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 429),
        "{refused:?}"
    );
    // The evicted member comes back, and the budget allows one disruption again.
    wait_for("budget recovered", || {
        let budgets = budgets.clone();
        async move { (budgets.get("dv").await.ok()?.status?.disruptions_allowed == 1).then_some(()) }
    })
    .await;
    let timeline = server.store().timeline();
    assert!(timeline.iter().any(
        |e| matches!(&e.change, Change::Readiness { pod, ready: false, .. } if pod == "m0-0")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_readiness_rule_mimics_charon_and_the_timeline_attributes_dips() {
    let rule = ReadinessRule {
        group_label: "dv".into(),
        min_running: 3,
        min_running_annotation: None,
    };
    let (server, client) = start(ClusterOptions {
        readiness_rules: vec![rule],
        ..ClusterOptions::fast()
    })
    .await;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for name in ["q0", "q1", "q2", "q3"] {
        sets.create(
            &PostParams::default(),
            &statefulset(name, "OnDelete", "charon:1", None),
        )
        .await
        .unwrap();
    }
    for name in ["q0-0", "q1-0", "q2-0", "q3-0"] {
        ready_pod(&pods, name).await;
    }
    // Two members stop running: the other two lose readiness although they are healthy.
    for pod in ["q0-0", "q1-0"] {
        server
            .inject(Fault::CrashLoop {
                namespace: "default".into(),
                pod: pod.into(),
                container: None,
                oom: false,
            })
            .unwrap();
    }
    wait_for("the healthy members unready without quorum", || {
        let pods = pods.clone();
        async move {
            let a = pods.get("q2-0").await.ok()?;
            let b = pods.get("q3-0").await.ok()?;
            (!is_ready(&a) && !is_ready(&b)).then_some(())
        }
    })
    .await;
    for pod in ["q0-0", "q1-0"] {
        server
            .inject(Fault::Heal {
                namespace: "default".into(),
                pod: pod.into(),
            })
            .unwrap();
    }
    for name in ["q0-0", "q1-0", "q2-0", "q3-0"] {
        ready_pod(&pods, name).await;
    }
    // A client deleting two members in a row takes the group below 3 ready: the timeline blames it.
    let deleter = {
        let mut config = server.client_config().unwrap();
        config.default_retry = false;
        // Deletes carry no field manager: the user agent names the actor, as in audit logs.
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("dvt-test/1.0"),
        ));
        Client::try_from(config).unwrap()
    };
    let deleter_pods: Api<Pod> = Api::default_namespaced(deleter);
    deleter_pods
        .delete("q0-0", &DeleteParams::default())
        .await
        .unwrap();
    deleter_pods
        .delete("q1-0", &DeleteParams::default())
        .await
        .unwrap();
    let timeline = server.store().timeline();
    let dips = readiness_dips(&timeline, "dv", |_| 3, "dvt-test");
    assert_eq!(dips.len(), 1, "{dips:?}");
    assert_eq!(dips[0].pod, "q1-0");
    // The crash-loop dips were the kubelet's doing, not the client's.
    assert!(!readiness_dips(&timeline, "dv", |_| 3, "kubelet").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_fail_a_fraction_of_requests_and_can_be_lifted() {
    let (server, client) = start(ClusterOptions {
        nodes: 1,
        zones: 1,
        ..ClusterOptions::fast()
    })
    .await;
    let nodes: Api<Node> = Api::all(client);
    server
        .inject(Fault::Api(ApiFaults {
            error_fraction: 0.5,
            latency_ms: 1,
            watch_drop_fraction: 0.0,
            slow_clients: Vec::new(),
            failing_gets: Vec::new(),
        }))
        .unwrap();
    let mut failures = 0;
    for _ in 0..100 {
        if let Err(kube::Error::Api(status)) = nodes.list(&ListParams::default()).await {
            assert_eq!(status.code, 500);
            failures += 1;
        }
    }
    assert!((20..=80).contains(&failures), "{failures} of 100 failed");
    server.inject(Fault::Api(ApiFaults::default())).unwrap();
    for _ in 0..20 {
        nodes.list(&ListParams::default()).await.unwrap();
    }
}
