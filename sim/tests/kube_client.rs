//! The simulated API server driven by kube-rs, as the operator will drive it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dvt_sim::{SimOptions, SimServer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, controller::Action};
use kube::{Client, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn start() -> (SimServer, Client) {
    let server = SimServer::start(SimOptions::default())
        .await
        .expect("simulator starts");
    let client = server.client().expect("client builds");
    (server, client)
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn owned_by(owner: &ConfigMap, name: &str) -> ConfigMap {
    let mut dependent = config_map(name, &[]);
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().expect("stored objects have a uid"),
        ..OwnerReference::default()
    }]);
    dependent
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn create_get_conflict_and_already_exists() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let created = api
        .create(&PostParams::default(), &config_map("a", &[("k", "v")]))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    let again = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(again, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{again:?}"
    );

    // An update carrying a stale resourceVersion is refused.
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    api.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some(BTreeMap::from([("k".into(), "v3".into())]));
    let conflict = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{conflict:?}"
    );

    let missing = api.get("nope").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.message == "configmaps \"nope\" not found"),
        "{missing:?}"
    );

    let generated = api
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    generate_name: Some("gen-".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() > 4);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for (name, app) in [("a", "x"), ("b", "y"), ("c", "x")] {
        let mut cm = config_map(name, &[]);
        cm.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&kube::api::ListParams::default().labels("app=x"))
                .await
                .unwrap()
        ),
        vec!["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&kube::api::ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        vec!["b"]
    );
}

#[tokio::test]
async fn watcher_sees_changes_in_order_and_recovers_from_gone() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list of an empty namespace.
    assert!(matches!(
        events.try_next().await.unwrap(),
        Some(Event::Init)
    ));
    assert!(matches!(
        events.try_next().await.unwrap(),
        Some(Event::InitDone)
    ));

    api.create(&PostParams::default(), &config_map("w", &[("v", "1")]))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("event arrives")
            .unwrap()
        {
            Some(Event::Apply(cm)) => {
                seen.push(format!("apply v={}", cm.data.unwrap_or_default()["v"]))
            }
            Some(Event::Delete(cm)) => seen.push(format!("delete {}", cm.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec!["apply v=1", "apply v=2", "delete w"]);

    // Drop the watcher's stream, then change and compact the history past its position:
    // resuming gets 410 Gone, and the watcher relists, finding the object created meanwhile.
    server.store().disconnect_watches();
    // Let the stream close before the next write, so that the write is only seen by the relist.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.create(&PostParams::default(), &config_map("after-gone", &[]))
        .await
        .unwrap();
    server
        .store()
        .compact(server.store().current_resource_version());
    let mut relisted = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.next())
            .await
            .expect("watcher recovers")
            .expect("the watch stream does not end")
        {
            // The watcher reports the failed resume once, then relists.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                relisted.push("gone".to_owned())
            }
            Err(other) => panic!("unexpected watch error {other:?}"),
            Ok(Event::Init) => relisted.push("init".to_owned()),
            Ok(Event::InitApply(cm)) => relisted.push(cm.name_any()),
            Ok(Event::InitDone) => break,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(relisted, vec!["gone", "init", "after-gone"]);
}

#[tokio::test]
async fn a_quiet_resources_watch_is_bookmarked_at_the_clusters_resource_version() {
    let (server, client) = start().await;
    let quiet: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let busy: Api<PodDisruptionBudget> = Api::default_namespaced(client);
    let start_at = server.store().current_resource_version().to_string();
    let mut stream = quiet
        .watch(&kube::api::WatchParams::default(), &start_at)
        .await
        .unwrap()
        .boxed();
    // Another resource changes; nothing this watch selects does.
    for i in 0..5 {
        let budget: PodDisruptionBudget = serde_json::from_value(
            json!({"metadata": {"name": format!("b{i}")}, "spec": {"minAvailable": 1}}),
        )
        .unwrap();
        busy.create(&PostParams::default(), &budget).await.unwrap();
    }
    let written = server.store().current_resource_version();
    // The first thing the quiet watch sends is a bookmark.
    let bookmark = match tokio::time::timeout(Duration::from_secs(15), stream.try_next())
        .await
        .expect("a bookmark within two intervals")
        .unwrap()
    {
        Some(kube::api::WatchEvent::Bookmark(bookmark)) => bookmark,
        other => panic!("the quiet watch saw {other:?}"),
    };
    let at: u64 = bookmark.metadata.resource_version.parse().unwrap();
    assert!(
        at >= written,
        "the bookmark ({at}) follows the cluster ({written}), not the quiet resource"
    );
    // Resuming from it after compaction is a watch, not a 410 and a relist.
    server.store().compact(at);
    let mut resumed = quiet
        .watch(&kube::api::WatchParams::default(), &at.to_string())
        .await
        .unwrap()
        .boxed();
    quiet
        .create(&PostParams::default(), &config_map("after", &[]))
        .await
        .unwrap();
    match resumed.try_next().await.unwrap() {
        Some(kube::api::WatchEvent::Added(added)) => assert_eq!(added.name_any(), "after"),
        other => panic!("a resume from the bookmark must work: {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_is_gone() {
    let (server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let created = api
        .create(&PostParams::default(), &config_map("x", &[]))
        .await
        .unwrap();
    let old = created.resource_version().unwrap();
    api.create(&PostParams::default(), &config_map("y", &[]))
        .await
        .unwrap();
    server
        .store()
        .compact(server.store().current_resource_version());
    // As kube-apiserver does: the watch starts, and its one event is an ERROR with 410 Expired.
    let mut stream = api
        .watch(&kube::api::WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(kube::api::WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("a compacted resourceVersion must not be watchable: {other:?}"),
    }
    assert!(stream.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn a_controller_reacts_to_watch_events() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    struct Context {
        api: Api<ConfigMap>,
    }
    async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
        if cm.name_any().ends_with("-echo") {
            return Ok(Action::await_change());
        }
        let echo = config_map(
            &format!("{}-echo", cm.name_any()),
            &[(
                "seen",
                cm.data
                    .clone()
                    .unwrap_or_default()
                    .get("v")
                    .map_or("", String::as_str),
            )],
        );
        ctx.api
            .patch(&echo.name_any(), &PatchParams::apply("echo-controller").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": echo.name_any()}, "data": echo.data})))
            .await?;
        Ok(Action::await_change())
    }
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            Arc::new(Context { api: api.clone() }),
        )
        .for_each(|_| async {});
    let running = tokio::spawn(controller);
    api.create(&PostParams::default(), &config_map("input", &[("v", "1")]))
        .await
        .unwrap();
    eventually("the controller to echo v=1", || async {
        api.get_opt("input-echo")
            .await
            .ok()
            .flatten()
            .is_some_and(|cm| {
                cm.data.unwrap_or_default().get("seen").map(String::as_str) == Some("1")
            })
    })
    .await;
    api.patch(
        "input",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    eventually("the controller to echo v=2", || async {
        api.get_opt("input-echo")
            .await
            .ok()
            .flatten()
            .is_some_and(|cm| {
                cm.data.unwrap_or_default().get("seen").map(String::as_str) == Some("2")
            })
    })
    .await;
    running.abort();
}

#[tokio::test]
async fn server_side_apply_keeps_each_managers_fields() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let apply = |manager: &'static str, data: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch("shared", &PatchParams::apply(manager), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": data}))).await
        }
    };
    apply("alice", json!({"a": "1", "b": "2"})).await.unwrap();
    apply("bob", json!({"c": "3"})).await.unwrap();
    let data = |cm: ConfigMap| cm.data.unwrap_or_default();
    assert_eq!(
        data(api.get("shared").await.unwrap()),
        BTreeMap::from([
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("c".into(), "3".into())
        ])
    );
    // alice drops b: it is removed; bob's c stays.
    apply("alice", json!({"a": "1"})).await.unwrap();
    let live = api.get("shared").await.unwrap();
    let mut managers: Vec<String> = live
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    managers.sort();
    assert_eq!(managers, vec!["alice", "bob"]);
    assert_eq!(
        data(live),
        BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())])
    );
    // bob changing alice's field conflicts, unless forced.
    let conflict = apply("bob", json!({"a": "9", "c": "3"})).await.unwrap_err();
    assert!(
        matches!(conflict, kube::Error::Api(ref s) if s.code == 409 && s.message.contains("conflict with \"alice\": .data.a")),
        "{conflict:?}"
    );
    api.patch("shared", &PatchParams::apply("bob").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"a": "9", "c": "3"}}))).await.unwrap();
    assert_eq!(data(api.get("shared").await.unwrap())["a"], "9");
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_and_generation() {
    let (_server, client) = start().await;
    let api: Api<PodDisruptionBudget> = Api::default_namespaced(client);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}, "status": {"currentHealthy": 7, "desiredHealthy": 1, "disruptionsAllowed": 6, "expectedPods": 1}})).unwrap();
    let created = api.create(&PostParams::default(), &pdb).await.unwrap();
    assert_eq!(created.status, None, "status is not written by a create");
    assert_eq!(created.metadata.generation, Some(1));
    api.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"currentHealthy": 1, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1}}))).await.unwrap();
    let after_status = api.get("p").await.unwrap();
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "a status write does not bump generation"
    );
    assert_eq!(
        after_status.status.as_ref().map(|s| s.current_healthy),
        Some(1)
    );
    // A spec write cannot change status, and bumps generation.
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"minAvailable": 2}, "status": {"currentHealthy": 99}})),
    )
    .await
    .unwrap();
    let after_spec = api.get("p").await.unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(after_spec.status.map(|s| s.current_healthy), Some(1));
}

#[tokio::test]
async fn finalizers_hold_an_object_until_removed() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = config_map("held", &[]);
    cm.metadata.finalizers = Some(vec!["dvt.io/test".into()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let held = api.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);

    // Background (the default): the owner goes at once, dependents right after.
    let owner = api
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by(&owner, "dep-1"))
        .await
        .unwrap();
    let grandchild_owner = api
        .create(&PostParams::default(), &owned_by(&owner, "dep-2"))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &owned_by(&grandchild_owner, "dep-2-child"),
    )
    .await
    .unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    for name in ["owner", "dep-1", "dep-2", "dep-2-child"] {
        assert!(
            api.get_opt(name).await.unwrap().is_none(),
            "{name} should be gone"
        );
    }

    // Foreground: the owner stays until its dependents are gone.
    let owner = api
        .create(&PostParams::default(), &config_map("fg-owner", &[]))
        .await
        .unwrap();
    let mut blocked = owned_by(&owner, "fg-dep");
    blocked.metadata.finalizers = Some(vec!["dvt.io/hold".into()]);
    api.create(&PostParams::default(), &blocked).await.unwrap();
    api.delete(
        "fg-owner",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    let waiting = api.get("fg-owner").await.unwrap();
    assert!(
        waiting
            .finalizers()
            .contains(&"foregroundDeletion".to_owned())
    );
    assert!(
        api.get("fg-dep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    api.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("fg-dep").await.unwrap().is_none());
    assert!(api.get_opt("fg-owner").await.unwrap().is_none());

    // Orphan: dependents stay, without the owner reference.
    let owner = api
        .create(&PostParams::default(), &config_map("or-owner", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by(&owner, "or-dep"))
        .await
        .unwrap();
    api.delete(
        "or-owner",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get_opt("or-owner").await.unwrap().is_none());
    let orphan = api.get("or-dep").await.unwrap();
    assert!(orphan.owner_references().is_empty());
}

fn ready_pod(name: &str, ready: bool) -> serde_json::Value {
    json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}, "metadata": {"name": name}})
}

#[tokio::test]
async fn eviction_honours_pod_disruption_budgets() {
    let (server, _) = start().await;
    // kube-rs retries 429 answers with backoff for minutes by default; a refused eviction must
    // come back at once.
    let mut config = server.client_config().unwrap();
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client);
    for name in ["m0", "m1", "m2"] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"dv": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(ready_pod(name, true)),
        )
        .await
        .unwrap();
    }
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"dv": "x"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    // 3 healthy, 2 required: one eviction is allowed, the next is refused.
    pods.evict("m0", &kube::api::EvictParams::default())
        .await
        .unwrap();
    assert!(pods.get_opt("m0").await.unwrap().is_none());
    let refused = pods
        .evict("m1", &kube::api::EvictParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 429 && s.message.contains("disruption budget")),
        "{refused:?}"
    );
    assert!(pods.get_opt("m1").await.unwrap().is_some());
}

#[tokio::test]
async fn custom_resources_are_served_and_validated() {
    let (_server, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crds/distributedvalidator.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = crds.get("distributedvalidators.dvt.io").await.unwrap();
    assert!(
        established
            .status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let resource = kube::api::ApiResource {
        group: "dvt.io".into(),
        version: "v1alpha1".into(),
        api_version: "dvt.io/v1alpha1".into(),
        kind: "DistributedValidator".into(),
        plural: "distributedvalidators".into(),
    };
    let api: Api<kube::api::DynamicObject> =
        Api::default_namespaced_with(client.clone(), &resource);
    let member = |name: &str, index: u32, class: &str| json!({"name": name, "index": index, "operator": {"name": name, "class": class}, "keyShareSecret": {"name": format!("ks-{name}")}, "enrSecret": {"name": format!("enr-{name}")}});
    let dv = |members: serde_json::Value| -> kube::api::DynamicObject {
        serde_json::from_value(json!({"apiVersion": "dvt.io/v1alpha1", "kind": "DistributedValidator", "metadata": {"name": "dv"}, "spec": {"network": "hoodi", "clusterLock": {"configMap": {"name": "lock"}}, "beaconNodes": {"endpoints": ["http://bn:5052"]}, "members": members}})).unwrap()
    };
    // The schema's CEL rule rejects duplicate indexes, with the rule's message.
    let duplicate = dv(json!([
        member("a", 0, "permissioned"),
        member("b", 0, "permissioned"),
        member("c", 2, "permissionless"),
        member("d", 3, "permissionless")
    ]));
    let rejected = api
        .create(&PostParams::default(), &duplicate)
        .await
        .unwrap_err();
    assert!(
        matches!(rejected, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("member share indexes must be unique")),
        "{rejected:?}"
    );
    // An enum violation names the field.
    let mut bad_network = dv(json!([
        member("a", 0, "permissioned"),
        member("b", 1, "permissioned"),
        member("c", 2, "permissionless"),
        member("d", 3, "permissionless")
    ]));
    bad_network.data["spec"]["network"] = json!("goerli");
    let rejected = api
        .create(&PostParams::default(), &bad_network)
        .await
        .unwrap_err();
    assert!(
        matches!(rejected, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("spec.network: Unsupported value: \"goerli\"")),
        "{rejected:?}"
    );
    // A valid one is stored with the schema's defaults.
    let valid = dv(json!([
        member("a", 0, "permissioned"),
        member("b", 1, "permissioned"),
        member("c", 2, "permissionless"),
        member("d", 3, "permissionless")
    ]));
    let stored = api.create(&PostParams::default(), &valid).await.unwrap();
    assert_eq!(
        stored.data["spec"]["clusterLock"]["configMap"]["key"],
        json!("cluster-lock.json")
    );
    assert_eq!(
        stored.data["spec"]["members"][0]["enrSecret"]["key"],
        json!("charon-enr-private-key")
    );
    // Transition rule: an existing member's share index cannot change.
    let mut moved = stored.clone();
    moved.data["spec"]["members"][0]["index"] = json!(1);
    moved.data["spec"]["members"][1]["index"] = json!(0);
    let rejected = api
        .replace("dv", &PostParams::default(), &moved)
        .await
        .unwrap_err();
    assert!(
        matches!(rejected, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("cannot change")),
        "{rejected:?}"
    );
    // Deleting the CRD stops serving it.
    crds.delete("distributedvalidators.dvt.io", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.list(&Default::default()).await.is_err());
}

#[tokio::test]
async fn requests_are_counted_by_client_and_verb() {
    let (server, _) = start().await;
    let mut config = server.client_config().unwrap();
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("counter-test/1.0"),
    ));
    let client = Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(
        &PostParams::default(),
        &config_map("counted", &[("a", "1")]),
    )
    .await
    .unwrap();
    api.get("counted").await.unwrap();
    api.get("counted").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    api.patch(
        "counted",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
    )
    .await
    .unwrap();
    api.delete("counted", &DeleteParams::default())
        .await
        .unwrap();
    let counts: Vec<(&'static str, u64)> = server
        .requests()
        .into_iter()
        .filter(|((client, _), _)| client == "counter-test")
        .map(|((_, verb), n)| (verb, n))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("create", 1),
            ("delete", 1),
            ("get", 2),
            ("list", 1),
            ("patch", 1)
        ]
    );
}

#[tokio::test]
async fn lists_are_served_in_pages_and_a_watcher_misses_nothing_written_between_them() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("more pages follow");
    let first_rv = first.metadata.resource_version.clone();

    // Written between pages: before the cursor (not on a later page) and after it.
    api.create(&PostParams::default(), &config_map("cm-00", &[]))
        .await
        .unwrap();
    api.delete("cm-6", &DeleteParams::default()).await.unwrap();

    let mut names: Vec<String> = first.items.iter().map(ResourceExt::name_any).collect();
    let mut token = Some(token);
    while let Some(next) = token {
        let page = api
            .list(&ListParams::default().limit(3).continue_token(&next))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version, first_rv,
            "pages share a version"
        );
        names.extend(page.items.iter().map(ResourceExt::name_any));
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
    }
    // Later pages show the current state: cm-6 is gone; cm-00 sorts before the cursor.
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4", "cm-5"]);
    assert!(
        api.list(&ListParams::default().limit(3).continue_token("garbage"))
            .await
            .is_err()
    );

    // A watch from the first page's version replays what the pages could not show.
    let events: Vec<(String, String)> = api
        .watch(
            &kube::api::WatchParams::default(),
            first_rv.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .take(2)
        .map(|e| match e.unwrap() {
            kube::api::WatchEvent::Added(cm) => ("ADDED".to_owned(), cm.name_any()),
            kube::api::WatchEvent::Deleted(cm) => ("DELETED".to_owned(), cm.name_any()),
            other => ("OTHER".to_owned(), format!("{other:?}")),
        })
        .collect()
        .await;
    assert_eq!(
        events,
        [
            ("ADDED".to_owned(), "cm-00".to_owned()),
            ("DELETED".to_owned(), "cm-6".to_owned())
        ]
    );

    // kube-rs' watcher pages its initial list (500 at a time by default); with pages of 2 its
    // store still ends with every object.
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    let stream = kube::runtime::reflector::reflector(
        writer,
        watcher::watcher(everywhere, watcher::Config::default().page_size(2)),
    );
    let task = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    let mut cached: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
    cached.sort();
    assert_eq!(
        cached,
        ["cm-0", "cm-00", "cm-1", "cm-2", "cm-3", "cm-4", "cm-5"]
    );
    task.abort();
}
