//! Keeping quorum, end to end on the simulated cluster, with the simulator's timeline as the
//! judge: the operator repairs broken members, rolls changes one member at a time, and its own
//! writes never take a DV below its threshold.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use dvt_operator::api::{DistributedValidator, Phase};
use dvt_operator::controller::names::{FIELD_MANAGER, LABEL_DV, member_pod_name};
use dvt_sim::Fault;
use dvt_sim::timeline::{Change, readiness_dips};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

/// Pod deletions (including evictions) by the operator, by pod name. Outside a storage change
/// (whose owner-reference patch these tests never cause) the operator writes pods only to
/// delete them: marking a bound pod for deletion, or removing an unbound one.
fn operator_deletes(world: &World) -> BTreeMap<String, usize> {
    let mut deletes = BTreeMap::new();
    for entry in world.sim.store().timeline() {
        if let Change::Write {
            resource,
            name,
            actor,
            ..
        } = entry.change
            && resource == "pods"
            && actor == FIELD_MANAGER
        {
            *deletes.entry(name).or_default() += 1;
        }
    }
    deletes
}

/// Readiness changes by the operator's writes that took a DV below `threshold`.
fn dips(world: &World, threshold: usize) -> Vec<String> {
    readiness_dips(
        &world.sim.store().timeline(),
        LABEL_DV,
        |_| threshold,
        FIELD_MANAGER,
    )
    .into_iter()
    .map(|d| format!("{} {} left {} ready", d.group, d.pod, d.ready))
    .collect()
}

async fn pod_uids(world: &World, dv: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::default_namespaced(world.client.clone());
    pods.list(&ListParams::default().labels(&format!("{LABEL_DV}={dv}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

async fn change_image(world: &World, name: &str) {
    let dvs: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    let patch = serde_json::json!({"spec": {"charon": {"image": NEW_IMAGE}}});
    dvs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

const NEW_IMAGE: &str = "obolnetwork/charon:v1.8.0";

/// Waits until the DV is Available with no member outdated, then checks that every pod runs the
/// new image. (`dv_where` prints the status on a timeout, which tells a stuck rollout apart.)
async fn rolled_out_everywhere(world: &World, name: &str) {
    dv_where(world, name, "Available after the rollout", rolled_out).await;
    let pods: Api<Pod> = Api::default_namespaced(world.client.clone());
    let selector = format!("{LABEL_DV}={name}");
    wait_for("every member on the new image", || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let updated = list.items.iter().all(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec.as_ref().is_some_and(|s| {
                        s.containers
                            .iter()
                            .any(|c| c.name == "charon" && c.image.as_deref() == Some(NEW_IMAGE))
                    })
            });
            (updated && !list.items.is_empty()).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_member_is_repaired_and_recovers() {
    let world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;
    let before = pod_uids(&world, "stader-4").await;
    let victim = member_pod_name("stader-4", "bravo");
    world
        .sim
        .inject(Fault::CrashLoop {
            namespace: "default".into(),
            pod: victim.clone(),
            container: None,
            oom: false,
        })
        .unwrap();
    let dv = dv_where(&world, "stader-4", "bravo repaired", |dv| {
        dv.status.as_ref().is_some_and(|s| {
            s.members.iter().any(|m| {
                m.name == "bravo"
                    && m.last_restart_reason
                        .as_deref()
                        .is_some_and(|r| r.contains("CrashLoopBackOff"))
            })
        })
    })
    .await;
    assert!(
        dv.status
            .unwrap()
            .members
            .iter()
            .any(|m| m.name == "bravo" && m.consecutive_restarts >= 1)
    );
    dv_where(&world, "stader-4", "stader-4 Available again", available).await;
    let after = pod_uids(&world, "stader-4").await;
    assert_ne!(before[&victim], after[&victim], "bravo's pod was replaced");
    for other in ["alpha", "charlie", "delta"] {
        let pod = member_pod_name("stader-4", other);
        assert_eq!(before[&pod], after[&pod], "{other} was left alone");
    }
    assert_eq!(dips(&world, 3), Vec::<String>::new());
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::default_namespaced(world.client.clone());
    let repaired = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| {
            (e.reason.as_deref() == Some("Repairing")).then_some(e.note.unwrap_or_default())
        })
        .collect::<Vec<_>>();
    assert!(
        repaired.iter().any(|n| n.contains("member bravo")
            && n.contains("CrashLoopBackOff")
            && n.contains("budget")),
        "{repaired:?}"
    );
}

async fn rolls_one_at_a_time(file: &str, name: &str, members: usize, threshold: usize) {
    let world = world().await;
    converged(&world, file, name).await;
    change_image(&world, name).await;
    rolled_out_everywhere(&world, name).await;
    let deletes = operator_deletes(&world);
    assert_eq!(
        deletes.len(),
        members,
        "every member restarted: {deletes:?}"
    );
    assert!(
        deletes.values().all(|count| *count == 1),
        "each exactly once: {deletes:?}"
    );
    assert_eq!(
        dips(&world, threshold),
        Vec::<String>::new(),
        "never below t by an operator write"
    );
    let pods: Api<Pod> = Api::default_namespaced(world.client.clone());
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        let image = pod
            .spec
            .unwrap()
            .containers
            .into_iter()
            .find(|c| c.name == "charon")
            .unwrap()
            .image
            .unwrap();
        assert_eq!(image, NEW_IMAGE);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_change_rolls_a_four_member_dv_one_member_at_a_time() {
    rolls_one_at_a_time("stader-4.yaml", "stader-4", 4, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_change_rolls_a_seven_member_dv_one_member_at_a_time() {
    rolls_one_at_a_time("stader-7.yaml", "stader-7", 7, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crashing_members_lose_quorum_and_only_they_are_repaired() {
    let world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;
    let before = pod_uids(&world, "stader-4").await;
    for member in ["alpha", "charlie"] {
        world
            .sim
            .inject(Fault::CrashLoop {
                namespace: "default".into(),
                pod: member_pod_name("stader-4", member),
                container: None,
                oom: false,
            })
            .unwrap();
    }
    dv_where(&world, "stader-4", "QuorumLost", |dv| {
        dv.status.as_ref().and_then(|s| s.phase) == Some(Phase::QuorumLost)
    })
    .await;
    dv_where(&world, "stader-4", "stader-4 Available again", available).await;
    let after = pod_uids(&world, "stader-4").await;
    for (member, replaced) in [
        ("alpha", true),
        ("bravo", false),
        ("charlie", true),
        ("delta", false),
    ] {
        let pod = member_pod_name("stader-4", member);
        assert_eq!(before[&pod] != after[&pod], replaced, "{member}");
    }
    let deletes = operator_deletes(&world);
    assert!(
        !deletes.contains_key(&member_pod_name("stader-4", "bravo"))
            && !deletes.contains_key(&member_pod_name("stader-4", "delta")),
        "{deletes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_resumes_the_rollout_without_restarting_a_member_twice() {
    let mut world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;
    change_image(&world, "stader-4").await;
    wait_for("the first restart", || {
        let deletes = operator_deletes(&world);
        async move { (!deletes.is_empty()).then_some(()) }
    })
    .await;
    world.stop_operator().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.start_operator().unwrap();
    rolled_out_everywhere(&world, "stader-4").await;
    let deletes = operator_deletes(&world);
    assert_eq!(deletes.len(), 4, "{deletes:?}");
    assert!(
        deletes.values().all(|count| *count == 1),
        "no member restarted twice: {deletes:?}"
    );
    assert_eq!(dips(&world, 3), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_strands_its_member_without_a_second_pod() {
    let world = world().await;
    let dv = converged(&world, "stader-4.yaml", "stader-4").await;
    let node = dv
        .status
        .unwrap()
        .members
        .into_iter()
        .find(|m| m.name == "delta")
        .and_then(|m| m.node)
        .unwrap();
    let before = pod_uids(&world, "stader-4").await;
    world.sim.inject(Fault::FailNode { node }).unwrap();
    dv_where(&world, "stader-4", "delta stranded", |dv| {
        dv.status
            .as_ref()
            .is_some_and(|s| s.members.iter().any(|m| m.name == "delta" && m.stranded))
    })
    .await;
    // Past every restart delay: still one pod for delta, the same one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pod_uids(&world, "stader-4").await;
    assert_eq!(before, after, "no pod was replaced");
    assert!(operator_deletes(&world).is_empty());
    let dv: DistributedValidator = Api::default_namespaced(world.client.clone())
        .get("stader-4")
        .await
        .unwrap();
    assert_eq!(dv.status.unwrap().phase, Some(Phase::Degraded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_dv_is_left_alone() {
    let world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;
    let dvs: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    let pause = serde_json::json!({"metadata": {"annotations": {"dvt.io/paused": "true"}}});
    dvs.patch("stader-4", &PatchParams::default(), &Patch::Merge(&pause))
        .await
        .unwrap();
    dv_where(&world, "stader-4", "ReconciliationPaused", |dv| {
        condition(dv, "ReconciliationPaused").is_some_and(|(status, _, _)| status == "True")
    })
    .await;
    change_image(&world, "stader-4").await;
    world
        .sim
        .inject(Fault::CrashLoop {
            namespace: "default".into(),
            pod: member_pod_name("stader-4", "bravo"),
            container: None,
            oom: false,
        })
        .unwrap();
    dv_where(&world, "stader-4", "outdated members reported", |dv| {
        dv.status
            .as_ref()
            .is_some_and(|s| s.members.iter().all(|m| m.outdated))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        operator_deletes(&world).is_empty(),
        "a paused DV is not touched"
    );
    // Unpausing lets the operator act.
    let resume = serde_json::json!({"metadata": {"annotations": {"dvt.io/paused": null}}});
    dvs.patch("stader-4", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    rolled_out_everywhere(&world, "stader-4").await;
}
