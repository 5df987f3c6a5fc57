//! Children edited by someone else are put back at the next reconcile, triggered by the watch:
//! a member scaled to two replicas (a second signer with the same key share) returns to one and
//! the extra pod goes; an edited image is restored; each correction is a Warning Event naming
//! the object and the field; an untouched DV still writes nothing.

use std::path::Path;

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
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
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
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
            (image == "obolnetwork/charon:v1.7.1").then_some(())
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
