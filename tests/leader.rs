//! Leader election with two operator processes on the simulated cluster: one reconciles, and the
//! standby takes over within the lease duration when the leader dies.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

struct Operator {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated cluster without an operator of its own, and two operator processes
/// (`replica-a`, `replica-b`) electing a leader on a Lease of `lease_seconds`.
async fn two_replicas(dir: &str, lease_seconds: u32) -> (TestWorld, [Operator; 2]) {
    let world = world_with(WorldOptions {
        operator: false,
        ..WorldOptions::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("operator.kubeconfig");
    world.write_operator_kubeconfig(&kubeconfig).unwrap();
    let operators = [
        operator("replica-a", &kubeconfig, lease_seconds),
        operator("replica-b", &kubeconfig, lease_seconds),
    ];
    (world, operators)
}

fn operator(name: &'static str, kubeconfig: &Path, lease_seconds: u32) -> Operator {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_dvt-operator"))
        .args([
            "run",
            "--leader-election",
            "--lease-duration-seconds",
            &lease_seconds.to_string(),
            "--lease-namespace",
            dvt_operator::demo::OPERATOR_NAMESPACE,
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--metrics-address",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ])
        .env("POD_NAME", name)
        .spawn()
        .expect("the operator starts");
    Operator { name, port, child }
}

async fn holder(world: &World) -> Option<String> {
    let leases: Api<Lease> =
        Api::namespaced(world.client.clone(), dvt_operator::demo::OPERATOR_NAMESPACE);
    leases
        .get_opt("dvt-operator-leader")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let (world, operators) = two_replicas("dvt-leader", 2).await;
    let mut operators = Vec::from(operators);

    let first = wait_for("a leader", || {
        let world = &world;
        async move { holder(world).await }
    })
    .await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;

    // Exactly one replica says it leads, and both serve health.
    let leading: Vec<&str> = operators
        .iter()
        .filter(|o| get(o.port, "/metrics").is_some_and(|m| m.contains("dvt_leader 1")))
        .map(|o| o.name)
        .collect();
    assert_eq!(leading, [first.as_str()]);
    for o in &operators {
        assert!(
            get(o.port, "/healthz")
                .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200")),
            "{}",
            o.name
        );
    }

    // The leader's /metrics shows the DV; the standby has not reconciled anything.
    let leader_port = operators.iter().find(|o| o.name == first).unwrap().port;
    let standby_port = operators.iter().find(|o| o.name != first).unwrap().port;
    let leader_metrics = wait_for("the DV gauges", || async move {
        get(leader_port, "/metrics")
            .filter(|m| m.contains("dvt_ready_members{namespace=\"default\",name=\"stader-4\"} 4"))
    })
    .await;
    assert!(
        leader_metrics
            .contains("dvt_phase{namespace=\"default\",name=\"stader-4\",phase=\"Available\"} 1")
    );
    let standby_metrics = get(standby_port, "/metrics").unwrap();
    assert!(
        standby_metrics.contains("dvt_reconciles_total 0\n"),
        "{standby_metrics}"
    );

    // The leader dies without releasing the lease; the standby takes over after it expires.
    let index = operators.iter().position(|o| o.name == first).unwrap();
    let leader = operators.remove(index);
    drop(leader);
    let second = wait_for("a new leader", || {
        let world = &world;
        let first = first.clone();
        async move { holder(world).await.filter(|h| *h != first) }
    })
    .await;
    assert_eq!(second, operators[0].name);
    world
        .apply_file(&Path::new(REPO).join("examples/stader-7.yaml"), "default")
        .await
        .unwrap();
    dv_where(
        &world,
        "stader-7",
        "stader-7 Available under the new leader",
        available,
    )
    .await;

    // A deleted DV's series leave /metrics within seconds (no finalizer: nothing reconciles it).
    let leader_port = operators[0].port;
    wait_for("stader-7's gauges", || async move {
        get(leader_port, "/metrics").filter(|m| m.contains("name=\"stader-7\""))
    })
    .await;
    kubectl(&world, &["delete", "dv", "stader-7"]);
    let after = wait_for("stader-7's series gone", || async move {
        get(leader_port, "/metrics").filter(|m| !m.contains("name=\"stader-7\""))
    })
    .await;
    assert!(
        after.contains("dvt_ready_members{namespace=\"default\",name=\"stader-4\"}"),
        "{after}"
    );
}

/// Writes in the simulator's timeline from `since`: (index, resource, client).
fn writes(world: &World, since: usize) -> Vec<(usize, String, String)> {
    world
        .sim
        .store()
        .timeline_since(since)
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| match entry.change {
            dvt_sim::timeline::Change::Write {
                resource, client, ..
            } => Some((since + i, resource, client)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_stops_writing_before_the_standby_takes_over() {
    let (world, operators) = two_replicas("dvt-fence", 3).await;
    let first = wait_for("a leader", || {
        let world = &world;
        async move { holder(world).await }
    })
    .await;
    world
        .apply_file(&Path::new(REPO).join("examples/stader-4.yaml"), "default")
        .await
        .unwrap();
    dv_where(&world, "stader-4", "stader-4 Available", available).await;

    // The leader's lease calls hang (and only those: the rest of its API works).
    let since = world.sim.store().timeline_len();
    world
        .sim
        .inject(dvt_sim::cluster::faults::Fault::Api(
            dvt_sim::cluster::faults::ApiFaults {
                slow_clients: vec![dvt_sim::cluster::faults::SlowClient {
                    user_agent_contains: format!("({first})"),
                    resource: "leases".into(),
                    latency_ms: 120_000,
                }],
                ..Default::default()
            },
        ))
        .unwrap();
    let second = wait_for("the standby to take the lease", || {
        let world = &world;
        let first = first.clone();
        async move { holder(world).await.filter(|h| *h != first) }
    })
    .await;
    // Work that needs writes: a spec change the leader must acknowledge in status.
    kubectl(
        &world,
        &[
            "patch",
            "dv",
            "stader-4",
            "--type=merge",
            "-p",
            r#"{"spec":{"rollout":{"minReadySeconds":7}}}"#,
        ],
    );
    dv_where(&world, "stader-4", "the change observed", |dv| {
        dv.status.as_ref().and_then(|s| s.observed_generation) == dv.metadata.generation
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let writes = writes(&world, since);
    let (taken, _, _) = writes
        .iter()
        .find(|(_, resource, client)| {
            resource.starts_with("leases") && client.contains(&format!("({second})"))
        })
        .cloned()
        .expect("the standby's takeover is in the timeline");
    let old_after: Vec<&(usize, String, String)> = writes
        .iter()
        .filter(|(i, _, client)| *i > taken && client.contains(&format!("({first})")))
        .collect();
    assert_eq!(
        old_after,
        Vec::<&(usize, String, String)>::new(),
        "the old leader wrote after the takeover"
    );
    assert!(
        writes.iter().any(|(i, resource, client)| *i > taken
            && resource.starts_with("distributedvalidators")
            && client.contains(&format!("({second})"))),
        "the new leader wrote the status: {writes:?}"
    );
    let old = operators.iter().find(|o| o.name == first).unwrap();
    let metrics = get(old.port, "/metrics").unwrap();
    assert!(metrics.contains("dvt_leader 0"), "{metrics}");
}
