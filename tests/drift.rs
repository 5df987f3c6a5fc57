//! Children edited by someone else are put back at the next reconcile, triggered by the watch:
//! a member scaled to two replicas (a second signer with the same key share) returns to one and
//! the extra pod goes; an edited image is restored; each correction is a Warning Event naming
//! the object and the field; an untouched DV still writes nothing; children deleted by someone
//! else are created again, although nothing about the DV changed.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};

async fn drift_events(world: &World) -> Vec<String> {
    let events: Api<Event> = Api::default_namespaced(world.client.clone());
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DriftCorrected"))
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.note)
        .collect()
}

async fn drift_event_naming(world: &World, object: &str, field: &str) {
    wait_for(
        &format!("a DriftCorrected Event naming {object}'s {field}"),
        || async move {
            drift_events(world)
                .await
                .iter()
                .any(|e| e.contains(object) && e.contains(field))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_scaled_to_two_replicas_returns_to_one_and_an_edited_image_is_restored() {
    let world = world().await;
    stader_4_available(&world).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(world.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(world.client.clone());

    // As a user would: a second replica of a member is a second signer with the same share.
    kubectl(
        &world,
        &[
            "patch",
            "statefulset",
            "stader-4-alpha",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":2}}"#,
        ],
    );
    wait_for(
        "stader-4-alpha back to one replica and its extra pod gone",
        || {
            let (sets, pods) = (sets.clone(), pods.clone());
            async move {
                let set = sets.get("stader-4-alpha").await.ok()?;
                let replicas = set.spec.as_ref()?.replicas;
                let extra = pods.get_opt("stader-4-alpha-1").await.ok()?;
                (replicas == Some(1) && extra.is_none()).then_some(())
            }
        },
    )
    .await;
    // The Event follows the write that restored it.
    drift_event_naming(&world, "StatefulSet stader-4-alpha", "spec.replicas").await;

    // An edited image in the pod template is restored too.
    kubectl(
        &world,
        &[
            "patch",
            "statefulset",
            "stader-4-bravo",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"example/evil:latest"}]"#,
        ],
    );
    wait_for("stader-4-bravo's image restored", || {
        let sets = sets.clone();
        async move {
            let set = sets.get("stader-4-bravo").await.ok()?;
            let image = set.spec?.template.spec?.containers[0].image.clone()?;
            (image == "obolnetwork/charon:v1.10.3").then_some(())
        }
    })
    .await;
    drift_event_naming(
        &world,
        "StatefulSet stader-4-bravo",
        "spec.template.spec.containers",
    )
    .await;
    let described = kubectl(&world, &["describe", "dv", "stader-4"]);
    assert!(described.contains("DriftCorrected"), "{described}");

    // Corrected objects are not corrected again: a quiet DV writes nothing.
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let since = world.sim.store().timeline_len();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let writes: Vec<String> = writes_by_operator(&world, since)
        .into_iter()
        .filter(|w| !w.contains("events"))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
}

/// A reconcile whose DV did not change skips building its children only while the caches show
/// every one of them as applied: a child someone deleted is missing there, and is built and
/// created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_deleted_by_someone_else_are_created_again() {
    let world = world().await;
    stader_4_available(&world).await;
    // Quiet first, so that the deletions below come after the DV's last build.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let services: Api<Service> = Api::default_namespaced(world.client.clone());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(world.client.clone());
    let old_service = services.get("stader-4-charlie").await.unwrap().metadata.uid;
    let old_pdb = pdbs.get("stader-4").await.unwrap().metadata.uid;
    kubectl(&world, &["delete", "service", "stader-4-charlie"]);
    kubectl(&world, &["delete", "poddisruptionbudget", "stader-4"]);
    wait_for(
        "Service stader-4-charlie and PodDisruptionBudget stader-4 created again",
        || {
            let (services, pdbs) = (services.clone(), pdbs.clone());
            let (old_service, old_pdb) = (old_service.clone(), old_pdb.clone());
            async move {
                let service = services.get_opt("stader-4-charlie").await.ok()??;
                let pdb = pdbs.get_opt("stader-4").await.ok()??;
                (service.metadata.uid != old_service && pdb.metadata.uid != old_pdb).then_some(())
            }
        },
    )
    .await;
    let described = kubectl(&world, &["get", "pdb", "stader-4", "-o", "yaml"]);
    assert!(described.contains("dvt.io/spec-hash"), "{described}");
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
}
