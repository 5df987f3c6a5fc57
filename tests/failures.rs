//! A reconcile that fails for a transient reason says so in a Warning Event on the DV (reason:
//! the failure's category, once, not once per try) and is retried with growing gaps; when the
//! cause goes away the DV converges.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::*;
use dvt_sim::cluster::faults::{ApiFaults, Fault};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_keystore_read_is_a_warning_and_backs_off() {
    let world = world().await;
    // Single-object reads of Secrets fail: the operator cannot read the members' keystores.
    world
        .sim
        .inject(Fault::Api(ApiFaults {
            failing_gets: vec!["secrets".into()],
            ..Default::default()
        }))
        .unwrap();
    let gets = || {
        world
            .sim
            .requests()
            .iter()
            .filter(|((client, verb), _)| client.starts_with("dvt-operator") && *verb == "get")
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    // Each try reads a keystore Secret and fails; the tries' start times, seen by polling.
    let mut tries = Vec::new();
    let mut seen = gets();
    let deadline = Instant::now() + Duration::from_secs(40);
    while tries.len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = gets();
        if now > seen {
            tries.push(Instant::now());
            seen = now;
        }
    }
    assert!(tries.len() >= 5, "only {} tries in 40 s", tries.len());
    let gaps: Vec<f64> = tries
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    for pair in gaps.windows(2) {
        assert!(pair[1] > pair[0] * 1.5, "the retry gaps grow: {gaps:?}");
    }

    let events: Api<Event> = Api::default_namespaced(world.client.clone());
    let warnings: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("KeystoreReadFailed"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one Event, not one per try: {warnings:?}"
    );
    let warning = &warnings[0];
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(
        warning.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("stader-4")
    );
    assert!(
        warning
            .note
            .as_deref()
            .is_some_and(|n| n.contains("keystores") && n.contains("next try in")),
        "{warning:?}"
    );
    let described = kubectl(&world, &["describe", "dv", "stader-4"]);
    assert!(described.contains("KeystoreReadFailed"), "{described}");

    // The cause goes away: the next try converges.
    world.sim.inject(Fault::Api(ApiFaults::default())).unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dv_deleted_mid_rollout_is_not_recreated_and_keeps_its_data() {
    use dvt_operator::api::DistributedValidator;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
    use kube::api::{DeleteParams, Patch, PatchParams};

    let world = world().await;
    stader_4_available(&world).await;
    let dvs: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    // A rollout starts (every member outdated), and the DV is deleted while it runs.
    let patch = serde_json::json!({"spec": {"charon": {"image": "obolnetwork/charon:v1.7.0"}}});
    dvs.patch("stader-4", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    dv_where(&world, "stader-4", "the rollout under way", |dv| {
        dv.status
            .as_ref()
            .is_some_and(|s| s.members.iter().any(|m| m.outdated))
    })
    .await;
    let since = world.sim.store().timeline_len();
    dvs.delete("stader-4", &DeleteParams::default())
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::default_namespaced(world.client.clone());
    wait_for("the children garbage-collected", || {
        let sets = sets.clone();
        async move {
            sets.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    // Nothing of the deleted DV comes back from a reconcile that was under way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recreated: Vec<String> = writes_by_operator(&world, since)
        .into_iter()
        .filter(|w| w.starts_with("ADDED") && !w.contains("events"))
        .collect();
    assert_eq!(recreated, Vec::<String>::new());
    assert!(
        sets.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(world.client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(world.client.clone());
    assert_eq!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        8
    );
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        8
    );
}
