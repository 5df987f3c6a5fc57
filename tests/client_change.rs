//! A member's validator client change would start the new client with an empty
//! slashing-protection database: the operator holds it on the client it runs, says why in
//! Progressing and an Event, restarts nothing, and performs the change once the DV is annotated
//! that the member's history was moved.

mod common;

use common::*;
use dvt_operator::api::DistributedValidator;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};

async fn images(world: &World, set: &str) -> Vec<String> {
    Api::<StatefulSet>::default_namespaced(world.client.clone())
        .get(set)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .filter_map(|c| c.image)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_change_is_held_until_the_slashing_protection_is_moved() {
    let world = world().await;
    converged(&world, "stader-4.yaml", "stader-4").await;
    let before = images(&world, "stader-4-alpha").await;
    assert!(
        before.iter().any(|i| i.starts_with("sigp/lighthouse:")),
        "{before:?}"
    );
    let since = world.sim.store().timeline().len();

    let dvs: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    let to_nimbus = serde_json::json!([
        {"op": "replace", "path": "/spec/members/0/validatorClient", "value": "nimbus"}
    ]);
    dvs.patch(
        "stader-4",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(to_nimbus).unwrap()),
    )
    .await
    .unwrap();
    let dv = dv_where(&world, "stader-4", "the change held", |dv| {
        condition(dv, "Progressing").is_some_and(|(_, reason, _)| reason == "ClientChangeHeld")
            && dv
                .status
                .as_ref()
                .is_some_and(|s| s.observed_generation == dv.metadata.generation)
    })
    .await;
    let (status, _, message) = condition(&dv, "Progressing").unwrap();
    assert_eq!(status, "True");
    assert!(
        message.starts_with(
            "member alpha runs lighthouse and the spec asks for nimbus: held on lighthouse"
        ),
        "{message}"
    );
    let status = dv.status.unwrap();
    assert_eq!(status.ready.as_deref(), Some("4/4"));
    assert_eq!(
        status.members[0].validator_client,
        Some(dvt_operator::api::ValidatorClient::Lighthouse)
    );
    let events = kubectl(
        &world,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=ClientChangeHeld",
        ],
    );
    assert!(events.contains("member alpha runs lighthouse"), "{events}");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(images(&world, "stader-4-alpha").await, before);
    assert_eq!(
        operator_writes(&world, since, "statefulsets.apps"),
        Vec::<String>::new()
    );
    assert_eq!(operator_writes(&world, since, "pods"), Vec::<String>::new());

    // Moved by hand: the DV is annotated, and alpha becomes a Nimbus member as a rollout step.
    dvs.patch(
        "stader-4",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
            "slashing-protection.dvt.io/alpha": "nimbus"
        }}})),
    )
    .await
    .unwrap();
    dv_where(&world, "stader-4", "alpha on nimbus", |dv| {
        available(dv)
            && dv.status.as_ref().is_some_and(|s| {
                s.members[0].validator_client == Some(dvt_operator::api::ValidatorClient::Nimbus)
                    && s.members.iter().all(|m| !m.outdated)
            })
    })
    .await;
    let after = images(&world, "stader-4-alpha").await;
    assert!(
        after
            .iter()
            .any(|i| i.starts_with("statusim/nimbus-validator-client:")),
        "{after:?}"
    );
}
