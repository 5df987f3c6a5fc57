//! A member's validator client change moves its slashing-protection history (EIP-3076): the
//! old client exports it and the new one imports it before its first start, as init steps of
//! the member's pod; one member at a time, within the quorum budget. A failed export leaves the
//! member stopped on its old client, with a condition and an Event saying why. The simulator
//! runs no script: what the steps print is what the test tells it (`Fault::InitStep`).

mod common;

use common::*;
use dvt_operator::api::{ClientMovePhase, DistributedValidator, ValidatorClient};
use dvt_sim::cluster::faults::Fault;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};

const EXPORT: &str = "export-slashing-protection";
const IMPORT: &str = "import-slashing-protection";
const FILE: &str = "/validator/data/slashing-protection/lighthouse-to-teku.json";

fn sha() -> String {
    "5e".repeat(32)
}

/// What the real steps print on success (migration.rs `summarise`).
fn steps_succeed(world: &World) {
    dvt_operator::demo::simulate_history_moves(world, FILE, &sha(), 1).unwrap();
}

async fn patch_clients(world: &World, changes: &[(usize, &str)]) {
    let ops: Vec<serde_json::Value> = changes
        .iter()
        .map(|(i, client)| {
            serde_json::json!({"op": "replace", "path": format!("/spec/members/{i}/validatorClient"), "value": client})
        })
        .collect();
    Api::<DistributedValidator>::default_namespaced(world.client.clone())
        .patch(
            "stader-4",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(serde_json::Value::Array(ops)).unwrap()),
        )
        .await
        .unwrap();
}

fn init_images(set: &StatefulSet) -> Vec<(String, String)> {
    set.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.image.unwrap_or_default()))
        .collect()
}

fn member_move(dv: &DistributedValidator, member: &str) -> Option<dvt_operator::api::ClientMove> {
    dv.status
        .as_ref()?
        .members
        .iter()
        .find(|m| m.name == member)?
        .client_move
        .clone()
}

fn member_client(dv: &DistributedValidator, member: &str) -> Option<ValidatorClient> {
    dv.status
        .as_ref()?
        .members
        .iter()
        .find(|m| m.name == member)?
        .validator_client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_change_moves_the_slashing_protection_history_one_member_at_a_time() {
    let world = world().await;
    steps_succeed(&world);
    converged(&world, "stader-4.yaml", "stader-4").await;
    let since = world.sim.store().timeline().len();

    // Two changes at once: alpha lighthouse -> teku, charlie prysm -> nimbus.
    patch_clients(&world, &[(0, "teku"), (2, "nimbus")]).await;
    let dv = dv_where(
        &world,
        "stader-4",
        "charlie's change waits for alpha's",
        |dv| {
            member_move(dv, "alpha").is_some()
                && condition(dv, "Progressing")
                    .is_some_and(|(_, reason, _)| reason == "ClientChangeHeld")
        },
    )
    .await;
    let (_, _, message) = condition(&dv, "Progressing").unwrap();
    assert!(
        message.contains("member charlie runs prysm and the spec asks for nimbus: held on prysm: member alpha changes client first"),
        "{message}"
    );
    assert_eq!(member_client(&dv, "charlie"), Some(ValidatorClient::Prysm));

    // Alpha's pod: lighthouse exports, teku imports its keys and then the history, then starts.
    let sets: Api<StatefulSet> = Api::default_namespaced(world.client.clone());
    let alpha = sets.get("stader-4-alpha").await.unwrap();
    let steps = init_images(&alpha);
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    // The export first of the client's steps (before teku's proposer config), the import after
    // them, and the check that no history was left behind last.
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(at(EXPORT) < at("proposer-config"), "{names:?}");
    assert!(at("proposer-config") < at(IMPORT), "{names:?}");
    assert_eq!(
        names.last(),
        Some(&"check-slashing-protection"),
        "{names:?}"
    );
    assert!(
        steps[at(EXPORT)].1.starts_with("sigp/lighthouse:"),
        "{steps:?}"
    );
    assert!(
        steps[at(IMPORT)].1.starts_with("consensys/teku:"),
        "{steps:?}"
    );

    let dv = dv_where(&world, "stader-4", "alpha on teku with its history", |dv| {
        member_move(dv, "alpha").is_some_and(|m| m.phase == ClientMovePhase::Moved)
            && member_client(dv, "alpha") == Some(ValidatorClient::Teku)
    })
    .await;
    let moved = member_move(&dv, "alpha").unwrap();
    assert_eq!(moved.from, ValidatorClient::Lighthouse);
    assert_eq!(moved.file, FILE);
    assert_eq!(moved.sha256, Some(sha()));
    assert_eq!(moved.validators, Some(1));

    // The steps as kubectl shows them on alpha's pod.
    let pod = Api::<Pod>::default_namespaced(world.client.clone())
        .get("stader-4-alpha-0")
        .await
        .unwrap();
    let inits = pod.status.unwrap().init_container_statuses.unwrap();
    let export = inits.iter().find(|c| c.name == EXPORT).unwrap();
    let ended = export.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(ended.exit_code, 0);
    assert!(ended.message.as_deref().unwrap().contains(&sha()));

    // Then charlie, and the DV ends with both moved, every member ready and none outdated.
    let dv = dv_where(&world, "stader-4", "charlie on nimbus", |dv| {
        member_move(dv, "charlie").is_some_and(|m| m.phase == ClientMovePhase::Moved)
            && member_client(dv, "charlie") == Some(ValidatorClient::Nimbus)
            && available(dv)
            && rolled_out(dv)
    })
    .await;
    let (status, reason, message) = condition(&dv, "ClientMoved").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ClientMoveDone"),
        "{message}"
    );
    assert!(
        message.contains("alpha (lighthouse to teku, 1 validator(s)"),
        "{message}"
    );
    // The moves never took the DV below its threshold.
    let lowest =
        dvt_operator::demo::lowest_ready_since(&world.sim.store().timeline(), since, "stader-4");
    assert!(lowest.is_some_and(|l| l >= 3), "{lowest:?}");
    let events = kubectl(
        &world,
        &["get", "events", "--field-selector", "reason=ClientMoveDone"],
    );
    assert!(
        events.contains("member alpha: lighthouse to teku"),
        "{events}"
    );
    assert!(
        events.contains("member charlie: prysm to nimbus"),
        "{events}"
    );
    let table = kubectl(
        &world,
        &[
            "get",
            "dv",
            "stader-4",
            "-o",
            "jsonpath={.status.members[0].clientMove.sha256}",
        ],
    );
    assert_eq!(table, sha());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_the_member_stopped_on_its_old_client() {
    let world = world().await;
    steps_succeed(&world);
    converged(&world, "stader-4.yaml", "stader-4").await;
    world
        .sim
        .inject(Fault::InitStep {
            container: EXPORT.into(),
            image: Some("sigp/lighthouse".into()),
            exit_code: 1,
            message: "Unable to open database at /validator/data/lighthouse/validators/slashing_protection.sqlite".into(),
        })
        .unwrap();
    patch_clients(&world, &[(0, "teku")]).await;
    let dv = dv_where(&world, "stader-4", "alpha's export failed", |dv| {
        member_move(dv, "alpha").is_some_and(|m| m.phase == ClientMovePhase::Failed)
            && condition(dv, "ClientMoved")
                .is_some_and(|(_, reason, _)| reason == "ClientMoveFailed")
    })
    .await;
    let (status, _, message) = condition(&dv, "ClientMoved").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains("export-slashing-protection exited 1: Unable to open database"),
        "{message}"
    );
    assert_eq!(
        member_client(&dv, "alpha"),
        Some(ValidatorClient::Lighthouse)
    );
    let status = dv.status.as_ref().unwrap();
    assert!(!status.members[0].ready);
    assert!(status.ready_members >= 3, "{:?}", status.ready);
    let pods = kubectl(&world, &["get", "pod", "stader-4-alpha-0"]);
    assert!(
        pods.contains("Init:CrashLoopBackOff") || pods.contains("Init:Error"),
        "{pods}\n{}",
        kubectl(
            &world,
            &[
                "get",
                "pod",
                "stader-4-alpha-0",
                "-o",
                "jsonpath={.status.initContainerStatuses}"
            ]
        )
    );
    let events = kubectl(
        &world,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=ClientMoveFailed",
        ],
    );
    assert!(
        events.contains("the member stays stopped, lighthouse's data untouched"),
        "{events}"
    );

    // The export works again (say, a fixed image): the move finishes without anyone's help.
    world
        .sim
        .inject(Fault::ClearInitStep {
            container: EXPORT.into(),
        })
        .unwrap();
    steps_succeed(&world);
    dv_where(&world, "stader-4", "alpha moved after all", |dv| {
        member_move(dv, "alpha").is_some_and(|m| m.phase == ClientMovePhase::Moved) && available(dv)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_over_another_clients_unimported_history_says_why_it_does_not_start() {
    let world = world().await;
    // What the real check step prints when bravo's volume holds lighthouse's data (a DV
    // re-created over kept volumes with bravo on another client).
    let why = "this volume holds lighthouse's data (its slashing-protection history) and none was imported into teku";
    world
        .sim
        .inject(Fault::InitStep {
            container: "check-slashing-protection".into(),
            image: Some("consensys/teku".into()),
            exit_code: 1,
            message: why.into(),
        })
        .unwrap();
    world
        .apply_file(&example_with("stader-4.yaml", FAST_ROLLOUT), "default")
        .await
        .unwrap();
    let dv = dv_where(&world, "stader-4", "bravo refused", |dv| {
        dv.status.as_ref().is_some_and(|s| {
            s.members.iter().any(|m| {
                m.name == "bravo"
                    && m.not_ready_reason
                        .as_deref()
                        .is_some_and(|r| r.contains(why))
            }) && s.ready_members == 3
        })
    })
    .await;
    let (_, _, message) = condition(&dv, "Available").unwrap();
    assert!(
        message.contains("bravo (this volume holds lighthouse's data"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_move_waits_for_quorum_budget() {
    let world = world().await;
    steps_succeed(&world);
    converged(&world, "stader-4.yaml", "stader-4").await;
    // Delta is down: 3 ready of 4 with threshold 3 leaves no member to take down.
    world
        .sim
        .inject(Fault::Unready {
            namespace: "default".into(),
            pod: "stader-4-delta-0".into(),
        })
        .unwrap();
    dv_where(&world, "stader-4", "delta down", |dv| {
        dv.status.as_ref().is_some_and(|s| s.ready_members == 3)
    })
    .await;
    let since = world.sim.store().timeline().len();
    patch_clients(&world, &[(0, "teku")]).await;
    let dv = dv_where(
        &world,
        "stader-4",
        "alpha's move held by the budget",
        |dv| {
            member_move(dv, "alpha").is_some_and(|m| m.phase == ClientMovePhase::Moving)
                && condition(dv, "Progressing")
                    .is_some_and(|(_, reason, _)| reason == "RolloutHeldByBudget")
        },
    )
    .await;
    assert_eq!(
        member_client(&dv, "alpha"),
        Some(ValidatorClient::Lighthouse)
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // Alpha still runs lighthouse: its pod was neither evicted nor deleted.
    assert_eq!(operator_writes(&world, since, "pods"), Vec::<String>::new());
    let alpha = Api::<Pod>::default_namespaced(world.client.clone())
        .get("stader-4-alpha-0")
        .await
        .unwrap();
    assert!(
        alpha.spec.unwrap().containers.iter().any(|c| c
            .image
            .as_deref()
            .is_some_and(|i| i.starts_with("sigp/lighthouse:"))),
        "alpha's running pod is the lighthouse one"
    );
    // Delta back: the move goes ahead.
    world
        .sim
        .inject(Fault::Heal {
            namespace: "default".into(),
            pod: "stader-4-delta-0".into(),
        })
        .unwrap();
    dv_where(&world, "stader-4", "alpha moved", |dv| {
        member_move(dv, "alpha").is_some_and(|m| m.phase == ClientMovePhase::Moved) && available(dv)
    })
    .await;
    let lowest =
        dvt_operator::demo::lowest_ready_since(&world.sim.store().timeline(), since, "stader-4");
    assert!(lowest.is_some_and(|l| l >= 3), "{lowest:?}");
}
