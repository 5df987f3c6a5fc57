//! Placement end to end on the simulated cluster: members spread over zones so that one zone
//! outage does not stop signing, and the DV says so when the cluster has too few zones.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use dvt_operator::api::{DistributedValidator, Phase};
use dvt_sim::Fault;

fn zones_of(dv: &DistributedValidator) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for member in &dv.status.as_ref().unwrap().members {
        *zones
            .entry(member.zone.clone().unwrap_or_default())
            .or_default() += 1;
    }
    zones
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_zones_give_each_member_its_own_and_a_zone_outage_keeps_quorum() {
    let world = world().await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    let dv = dv_where(&world, "stader-4", "stader-4 Available", available).await;
    assert_eq!(
        zones_of(&dv).values().copied().collect::<Vec<_>>(),
        [1, 1, 1, 1]
    );
    let (status, _, message) = condition(&dv, "PlacementSatisfied").unwrap();
    assert_eq!(status, "True", "{message}");
    assert!(message.contains("survives 1 zone outage"), "{message}");
    let zone = dv.status.unwrap().members[0].zone.clone().unwrap();
    world.sim.inject(Fault::FailZone { zone }).unwrap();
    let dv = dv_where(&world, "stader-4", "Degraded", |dv| {
        dv.status.as_ref().and_then(|s| s.phase) == Some(Phase::Degraded)
    })
    .await;
    assert_eq!(dv.status.unwrap().ready.as_deref(), Some("3/4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_zones_report_that_one_zone_outage_would_stop_signing() {
    let world = world_with(WorldOptions {
        nodes: 6,
        zones: 3,
        ..WorldOptions::default()
    })
    .await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    let dv = dv_where(&world, "stader-4", "stader-4 Available", available).await;
    let (status, reason, message) = condition(&dv, "PlacementSatisfied").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ZoneOverloaded")
    );
    assert!(
        message.contains("stops signing when it fails")
            && message.contains("survives 0 zone outage"),
        "{message}"
    );

    // Under the Required policy the same DV is not created, and the condition says what to do.
    let required = example_with("stader-4.yaml", "  placement: {policy: Required}\n");
    let text = std::fs::read_to_string(&required)
        .unwrap()
        .replace("name: stader-4\n", "name: strict\n");
    std::fs::write(&required, text).unwrap();
    world.apply_file(&required, "default").await.unwrap();
    let strict = dv_where(&world, "strict", "the placement refusal", |dv| {
        condition(dv, "Available").is_some_and(|(_, reason, _)| reason == "PlacementUnsatisfiable")
    })
    .await;
    let (_, _, message) = condition(&strict, "Available").unwrap();
    assert!(
        message.contains("add nodes in at least 4 zones"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_members_over_four_zones_put_at_most_two_in_a_zone() {
    let world = world().await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-7.yaml"), "default")
        .await
        .unwrap();
    let dv = dv_where(&world, "stader-7", "stader-7 Available", available).await;
    let zones = zones_of(&dv);
    assert_eq!(zones.len(), 4);
    assert!(zones.values().all(|c| *c <= 2), "{zones:?}");
    assert_eq!(condition(&dv, "PlacementSatisfied").unwrap().0, "True");
    assert_eq!(condition(&dv, "ClientDiversity").unwrap().0, "True");
}
