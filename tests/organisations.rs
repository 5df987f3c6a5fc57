//! One distributed validator run by two organisations: two simulated clusters, each with its own
//! operator and its own members of the lock, on one simulated p2p network. Each operator sees
//! the other organisation's members only through its own members' Charon (`p2p_ping_success`),
//! counts them toward quorum, and never takes the cluster below its threshold.

mod common;

use std::time::Duration;

use common::*;
use dvt_operator::api::DistributedValidator;
use dvt_operator::controller::names::member_pod_name;
use dvt_operator::demo::lowest_ready_since;
use dvt_sim::cluster::ClusterOptions;
use dvt_sim::cluster::charon::{NotReadyReason, P2pWorld};
use dvt_sim::cluster::faults::Fault;
use kube::api::{Api, Patch, PatchParams};

/// Reads every 100 ms; a member not heard from for 1.5 s is down.
const PEER_TIMING: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(1500));

async fn organisation(p2p: &std::sync::Arc<P2pWorld>) -> TestWorld {
    world_with(WorldOptions {
        pace: Some(ClusterOptions {
            p2p: p2p.clone(),
            // Each member's Charon is ready only while it sees quorum peers (its own /readyz),
            // across both clusters; 600 ms stands for Charon's minute.
            charon_peer_readiness: Some(Duration::from_millis(600)),
            ..ClusterOptions::fast()
        }),
        // Each cluster runs only some members: the per-cluster rule gives way to Charon's own.
        quorum_readiness: false,
        peer_timing: Some(PEER_TIMING),
        ..WorldOptions::default()
    })
    .await
}

/// Rolled out at the DV's current generation (the status describes the change just made).
fn rolled_out_now(dv: &DistributedValidator) -> bool {
    rolled_out(dv)
        && dv.status.as_ref().and_then(|s| s.observed_generation) == dv.metadata.generation
        && ready_is("4/4")(dv)
}

/// Two organisations on one p2p network, each with its half of `dv` applied (the examples'
/// `-org-a` and `-org-b` files).
async fn two_organisations(dv: &str) -> (std::sync::Arc<P2pWorld>, TestWorld, TestWorld) {
    let p2p = P2pWorld::new();
    let a = organisation(&p2p).await;
    let b = organisation(&p2p).await;
    for (world, half) in [(&a, "a"), (&b, "b")] {
        world
            .apply_file(
                &example_with(&format!("{dv}-org-{half}.yaml"), FAST_ROLLOUT),
                "default",
            )
            .await
            .unwrap();
    }
    (p2p, a, b)
}

fn ready_is(expected: &'static str) -> impl Fn(&DistributedValidator) -> bool {
    move |dv| dv.status.as_ref().and_then(|s| s.ready.as_deref()) == Some(expected)
}

fn member<'a>(dv: &'a DistributedValidator, name: &str) -> &'a dvt_operator::api::MemberStatus {
    dv.status
        .as_ref()
        .and_then(|s| s.members.iter().find(|m| m.name == name))
        .unwrap_or_else(|| panic!("member {name} in status"))
}

async fn set_charon_image(world: &World, dv: &str, image: &str) {
    let api: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    let patch = serde_json::json!({"spec": {"charon": {"image": image}}});
    api.patch(dv, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// `minAvailable` of the DV's PodDisruptionBudget, as `kubectl get pdb` shows it.
fn min_available(world: &World, dv: &str) -> String {
    kubectl(
        world,
        &["get", "pdb", dv, "-o", "jsonpath={.spec.minAvailable}"],
    )
}

fn node_of(world: &World, pod: &str) -> String {
    let text = kubectl(
        world,
        &["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"],
    );
    assert!(!text.is_empty(), "{pod} is scheduled");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_organisations_run_one_dv_and_keep_its_quorum_together() {
    let (p2p, a, b) = two_organisations("stader-4").await;

    // Both sides see all four members: two ready here, two seen through Charon.
    let seen_from_a = dv_where(&a, "stader-4", "A sees 4/4", ready_is("4/4")).await;
    dv_where(&b, "stader-4", "B sees 4/4", ready_is("4/4")).await;
    let charlie = member(&seen_from_a, "charlie");
    assert!(charlie.remote && charlie.ready);
    assert_eq!(
        condition(&seen_from_a, "PeersConnected").map(|(status, reason, _)| (status, reason)),
        Some(("True".into(), "PeersSeen".into()))
    );
    let pods = kubectl(&a, &["get", "pods", "-o", "name"]);
    assert_eq!(
        pods.lines().collect::<Vec<_>>(),
        vec!["pod/stader-4-alpha-0", "pod/stader-4-bravo-0"],
        "A runs only its own members"
    );
    // The budget over A's pods: t = 3 less the 2 remote members up.
    let minimum = min_available(&a, "stader-4");
    assert_eq!(minimum, "1");

    // A Charon image change in A rolls A's members one at a time: with B's two up, A always
    // keeps one of its own ready (3 of 4 sign).
    let since = a.sim.store().timeline_len();
    set_charon_image(&a, "stader-4", "obolnetwork/charon:v1.7.2").await;
    dv_where(&a, "stader-4", "A rolled out", rolled_out_now).await;
    let restarted = operator_writes(&a, since, "pods");
    assert_eq!(restarted, vec!["stader-4-alpha-0", "stader-4-bravo-0"]);
    assert_eq!(
        lowest_ready_since(&a.sim.store().timeline(), since, "stader-4"),
        Some(1),
        "one of A's members at a time"
    );

    // charlie's node fails in B: from A, 2 ready here + 1 remote = 3 = t, so A's next rollout
    // waits, says why, and resumes when charlie is back.
    let charlie_node = node_of(&b, &member_pod_name("stader-4", "charlie"));
    b.sim
        .inject(Fault::FailNode {
            node: charlie_node.clone(),
        })
        .unwrap();
    let down = dv_where(&a, "stader-4", "A sees charlie down", |dv| {
        !member(dv, "charlie").ready && ready_is("3/4")(dv)
    })
    .await;
    assert!(
        member(&down, "charlie").last_seen.is_some(),
        "status says when charlie last answered"
    );
    let minimum = min_available(&a, "stader-4");
    assert_eq!(minimum, "2", "a drain in A may not take a member now");
    let since = a.sim.store().timeline_len();
    set_charon_image(&a, "stader-4", "obolnetwork/charon:v1.7.3").await;
    let held = dv_where(&a, "stader-4", "A's rollout held", |dv| {
        condition(dv, "Progressing").is_some_and(|(_, reason, _)| reason == "RolloutHeldByBudget")
    })
    .await;
    let (_, _, message) = condition(&held, "Progressing").unwrap();
    assert!(
        message.contains("2 ready here and 1 of 2 remote members seen, 3 needed to sign")
            && message.contains("not seen: charlie"),
        "{message}"
    );
    let events = kubectl(
        &a,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=RolloutHeldByBudget",
            "-o",
            "name",
        ],
    );
    assert!(
        !events.trim().is_empty(),
        "a Warning Event says the rollout waits"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        operator_writes(&a, since, "pods"),
        Vec::<String>::new(),
        "no member of A is taken down while charlie is down"
    );
    b.sim
        .inject(Fault::RestoreNode { node: charlie_node })
        .unwrap();
    dv_where(
        &a,
        "stader-4",
        "A rolled out after charlie returned",
        rolled_out_now,
    )
    .await;
    assert_eq!(operator_writes(&a, since, "pods").len(), 2);

    // The link between the two organisations is cut: each sees the other's members as not
    // seen, its own Charon loses quorum peers (not ready: quorum peers not connected), and A
    // restarts nothing, even with a change to roll out.
    let (site_a, site_b) = (
        a.sim.cluster().unwrap().site(),
        b.sim.cluster().unwrap().site(),
    );
    p2p.cut(site_a, site_b);
    let cut = dv_where(&a, "stader-4", "A sees B's members not seen", |dv| {
        ready_is("0/4")(dv)
            && condition(dv, "PeersConnected").is_some_and(|(status, _, _)| status == "False")
            && member(dv, "alpha").not_ready_reason.as_deref() == Some("quorum peers not connected")
    })
    .await;
    let (_, _, message) = condition(&cut, "PeersConnected").unwrap();
    assert!(
        message.contains("charlie (remote, operator permissionless-operator-1): not seen for")
            && message.contains("delta (remote, operator permissionless-operator-2): not seen for"),
        "{message}"
    );
    dv_where(
        &b,
        "stader-4",
        "B sees A's members not seen",
        ready_is("0/4"),
    )
    .await;
    let since = a.sim.store().timeline_len();
    set_charon_image(&a, "stader-4", "obolnetwork/charon:v1.7.4").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator_writes(&a, since, "pods"),
        Vec::<String>::new(),
        "A restarts no healthy member while it cannot see B"
    );
    p2p.mend(site_a, site_b);
    let held_since = since;
    dv_where(
        &a,
        "stader-4",
        "A rolled out after the link returned",
        rolled_out_now,
    )
    .await;

    assert_eq!(
        operator_writes(&a, held_since, "pods").len(),
        2,
        "the held rollout went on once B was seen again"
    );

    // A member whose Charon reports its beacon node syncing says so in `kubectl describe dv`.
    a.sim
        .inject(Fault::CharonNotReady {
            namespace: "default".into(),
            pod: member_pod_name("stader-4", "alpha"),
            reason: NotReadyReason::BeaconNodeSyncing,
        })
        .unwrap();
    dv_where(&a, "stader-4", "alpha's reason in status", |dv| {
        member(dv, "alpha").not_ready_reason.as_deref() == Some("beacon node syncing")
    })
    .await;
    let described = kubectl(&a, &["describe", "dv", "stader-4"]);
    assert!(
        described.contains("alpha (beacon node syncing)"),
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seven_members_split_three_and_four_converge_and_roll_one_at_a_time() {
    let (_p2p, a, b) = two_organisations("stader-7").await;
    dv_where(&a, "stader-7", "A sees 7/7", ready_is("7/7")).await;
    dv_where(&b, "stader-7", "B sees 7/7", ready_is("7/7")).await;
    // t = 5: B's 4 up leave A needing 1 of its 3 ready; a rollout in B (needing 2 of its 4 with
    // A's 3 up) keeps at least 2 of B's ready.
    let since = b.sim.store().timeline_len();
    set_charon_image(&b, "stader-7", "obolnetwork/charon:v1.7.2").await;
    dv_where(&b, "stader-7", "B rolled out", |dv| {
        rolled_out(dv)
            && dv.status.as_ref().and_then(|s| s.observed_generation) == dv.metadata.generation
            && ready_is("7/7")(dv)
    })
    .await;
    let lowest = lowest_ready_since(&b.sim.store().timeline(), since, "stader-7").unwrap();
    assert_eq!(
        lowest, 3,
        "B kept three of its four members ready: one at a time"
    );
    assert_eq!(operator_writes(&b, since, "pods").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_published_by_a_load_balancer_advertises_the_address_it_got() {
    let p2p = P2pWorld::new();
    let a = organisation(&p2p).await;
    let exposed =
        format!("{FAST_ROLLOUT}  p2p: {{type: LoadBalancer, sourceRanges: [203.0.113.0/24]}}\n");
    a.apply_file(&example_with("stader-4-org-a.yaml", &exposed), "default")
        .await
        .unwrap();
    let address = wait_for("alpha's LoadBalancer address", || async {
        let ip = kubectl(
            &a,
            &[
                "get",
                "service",
                "stader-4-alpha-p2p",
                "--ignore-not-found",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        );
        (!ip.is_empty()).then_some(ip)
    })
    .await;
    let kind = kubectl(
        &a,
        &[
            "get",
            "service",
            "stader-4-alpha-p2p",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].port} {.spec.loadBalancerSourceRanges[0]}",
        ],
    );
    assert_eq!(kind, "LoadBalancer 3610 203.0.113.0/24");
    // Charon advertises the address the Service got (a template change, rolled out as any).
    let flag = format!("--p2p-external-ip={address}");
    wait_for("alpha's Charon advertising its address", || async {
        let args = kubectl(
            &a,
            &[
                "get",
                "statefulset",
                "stader-4-alpha",
                "-o",
                "jsonpath={.spec.template.spec.containers[?(@.name==\"charon\")].args}",
            ],
        );
        args.contains(&flag).then_some(())
    })
    .await;
    let policy = kubectl(
        &a,
        &[
            "get",
            "networkpolicy",
            "stader-4",
            "-o",
            "jsonpath={.spec.ingress[*].from[*].ipBlock.cidr}",
        ],
    );
    assert!(policy.contains("203.0.113.0/24"), "{policy}");
    // No longer exposed: the Services go.
    let api: Api<DistributedValidator> = Api::default_namespaced(a.client.clone());
    api.patch(
        "stader-4",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"p2p": null}})),
    )
    .await
    .unwrap();
    wait_for("the p2p Services removed", || async {
        let left = kubectl(&a, &["get", "services", "-o", "name"]);
        (!left.contains("-p2p")).then_some(())
    })
    .await;
}
