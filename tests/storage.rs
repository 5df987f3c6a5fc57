//! Storage changes a StatefulSet cannot take: a larger `spec.storage.charonSize` grows each
//! member's PVC in place and recreates its StatefulSet around the running pod; a smaller one is
//! refused with a condition and changes nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use dvt_operator::api::DistributedValidator;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};

const MEMBERS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

/// Each member pod's uid and restart count: what must not change.
async fn pods(world: &World) -> BTreeMap<String, (String, i32)> {
    let pods: Api<Pod> = Api::default_namespaced(world.client.clone());
    pods.list(&ListParams::default().labels("dvt.io/distributed-validator=stader-4"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|pod| {
            let restarts = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            (
                pod.metadata.name.clone().unwrap_or_default(),
                (pod.metadata.uid.clone().unwrap_or_default(), restarts),
            )
        })
        .collect()
}

async fn claim(world: &World, name: &str) -> (String, String) {
    let pvc = Api::<PersistentVolumeClaim>::default_namespaced(world.client.clone())
        .get(name)
        .await
        .unwrap();
    let request = pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
        .0
        .clone();
    let capacity = pvc
        .status
        .and_then(|s| s.capacity)
        .map(|c| c["storage"].0.clone())
        .unwrap_or_default();
    (request, capacity)
}

async fn template_size(world: &World, set: &str) -> Option<String> {
    let set = Api::<StatefulSet>::default_namespaced(world.client.clone())
        .get_opt(set)
        .await
        .ok()??;
    set.spec?
        .volume_claim_templates?
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("charon-data"))?
        .spec?
        .resources?
        .requests?
        .get("storage")
        .map(|q| q.0.clone())
}

async fn set_charon_size(world: &World, size: &str) {
    Api::<DistributedValidator>::default_namespaced(world.client.clone())
        .patch(
            "stader-4",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"storage": {"charonSize": size}}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_charon_size_grows_the_pvcs_without_restarting_a_member_and_a_smaller_one_is_refused()
 {
    let mut world = world().await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
    let before = pods(&world).await;
    assert_eq!(before.len(), 4);
    let client_claim = claim(&world, "validator-client-data-stader-4-alpha-0").await;

    set_charon_size(&world, "2Gi").await;
    for member in MEMBERS {
        let set = format!("stader-4-{member}");
        let pvc = format!("charon-data-{set}-0");
        wait_for(&format!("{pvc} grown and {set} recreated with 2Gi"), || {
            let (world, pvc, set) = (&world, pvc.clone(), set.clone());
            async move {
                let grown = claim(world, &pvc).await == ("2Gi".to_owned(), "2Gi".to_owned());
                let template = template_size(world, &set).await;
                (grown && template.as_deref() == Some("2Gi")).then_some(())
            }
        })
        .await;
    }
    let dv = dv_where(
        &world,
        "stader-4",
        "stader-4 Available after the resize",
        |dv| {
            available(dv)
                && dv
                    .status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == dv.metadata.generation)
        },
    )
    .await;
    assert_eq!(dv.status.unwrap().ready.as_deref(), Some("4/4"));
    assert_eq!(
        pods(&world).await,
        before,
        "no member pod was replaced or restarted"
    );
    // The validator client's claims were not asked to change.
    assert_eq!(
        claim(&world, "validator-client-data-stader-4-alpha-0").await,
        client_claim
    );
    let events = kubectl(
        &world,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=stader-4",
        ],
    );
    assert!(
        events.contains("VolumeExpanding") && events.contains("StatefulSetRecreated"),
        "{events}"
    );

    // Smaller: refused, said why, nothing changed.
    set_charon_size(&world, "512Mi").await;
    let dv = dv_where(&world, "stader-4", "the shrink refused", |dv| {
        condition(dv, "Available").is_some_and(|(_, reason, _)| reason == "StorageChangeRefused")
    })
    .await;
    let (_, _, message) = condition(&dv, "Available").unwrap();
    assert!(
        message.contains("spec.storage.charonSize cannot shrink from 2Gi to 512Mi (a PersistentVolumeClaim never shrinks); set it back to 2Gi or more"),
        "{message}"
    );
    for member in MEMBERS {
        let set = format!("stader-4-{member}");
        assert_eq!(
            claim(&world, &format!("charon-data-{set}-0")).await.0,
            "2Gi"
        );
        assert_eq!(template_size(&world, &set).await.as_deref(), Some("2Gi"));
    }
    assert_eq!(pods(&world).await, before);

    // Each pod carries the DV as a second, non-controlling owner, put there before its old
    // StatefulSet was deleted with propagationPolicy Orphan.
    let pod_api: Api<Pod> = Api::default_namespaced(world.client.clone());
    for member in MEMBERS {
        let pod = pod_api.get(&format!("stader-4-{member}-0")).await.unwrap();
        let owners: Vec<(String, Option<bool>)> = pod
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.kind, o.controller))
            .collect();
        assert_eq!(
            owners,
            [
                ("DistributedValidator".to_owned(), Some(false)),
                ("StatefulSet".to_owned(), Some(true)),
            ],
            "{member}"
        );
    }
    // The window between the Orphan delete and the new StatefulSet, held open (the operator
    // stopped): a DV deleted then takes its member's pod with it instead of leaving a validator
    // that nobody owns running. Its claims stay.
    world.stop_operator().await;
    Api::<StatefulSet>::default_namespaced(world.client.clone())
        .delete(
            "stader-4-alpha",
            &kube::api::DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_for("stader-4-alpha-0 without a controller", || {
        let pod_api = pod_api.clone();
        async move {
            let pod = pod_api.get("stader-4-alpha-0").await.ok()?;
            (!pod
                .metadata
                .owner_references
                .unwrap_or_default()
                .iter()
                .any(|o| o.controller == Some(true)))
            .then_some(())
        }
    })
    .await;
    Api::<DistributedValidator>::default_namespaced(world.client.clone())
        .delete("stader-4", &Default::default())
        .await
        .unwrap();
    wait_for("every member pod gone with the DV", || {
        let world = &world;
        async move { pods(world).await.is_empty().then_some(()) }
    })
    .await;
    assert_eq!(
        claim(&world, "charon-data-stader-4-alpha-0").await.0,
        "2Gi",
        "the claims stay"
    );
}

/// A class that does not allow expansion: kube-apiserver's resize admission refuses the larger
/// request, the operator says so with the server's message, and the StatefulSet is not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_without_expansion_leaves_the_members_alone_and_says_why() {
    use k8s_openapi::api::storage::v1::StorageClass;
    let world = world().await;
    Api::<StorageClass>::all(world.client.clone())
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "fixed"}, "provisioner": "sim.dvt.io/volumes",
                "allowVolumeExpansion": false
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let manifest = example_with("stader-4.yaml", "  storage: {storageClassName: fixed}\n");
    world.apply_file(&manifest, "default").await.unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;
    let before = pods(&world).await;
    let sets: Api<StatefulSet> = Api::default_namespaced(world.client.clone());
    let uid = sets.get("stader-4-alpha").await.unwrap().metadata.uid;

    set_charon_size(&world, "2Gi").await;
    let message = wait_for("a Warning with the resize admission's refusal", || {
        let world = &world;
        async move {
            let events: Api<k8s_openapi::api::events::v1::Event> =
                Api::default_namespaced(world.client.clone());
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("stader-4")
                })
                .find_map(|e| {
                    let note = e.note.unwrap_or_default();
                    note.contains("only dynamically provisioned pvc can be resized")
                        .then(|| {
                            format!(
                                "{} {} {note}",
                                e.type_.unwrap_or_default(),
                                e.reason.unwrap_or_default()
                            )
                        })
                })
        }
    })
    .await;
    assert!(
        message.starts_with(
            "Warning VolumeExpansionFailed PersistentVolumeClaim charon-data-stader-4-"
        ),
        "{message}"
    );
    assert_eq!(claim(&world, "charon-data-stader-4-alpha-0").await.0, "1Gi");
    assert_eq!(
        sets.get("stader-4-alpha").await.unwrap().metadata.uid,
        uid,
        "the StatefulSet is kept"
    );
    assert_eq!(pods(&world).await, before);
}
