//! A short seeded chaos run (see `dvt_operator::chaos`): crash and OOM loops, node and zone
//! failures, operator kill -9 and leader failover between two processes, API error bursts and
//! dropped watches, rollouts and hand-edits of children, over a 4- and a 7-member DV. A longer
//! run: `cargo run --release --bin dvt-bench -- chaos --seconds 600 --seed S`.

use std::process::Command;
use std::time::Duration;

use dvt_operator::chaos::{ChaosOptions, log_to, run};
use dvt_operator::demo::OPERATOR_NAMESPACE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_keeps_every_invariant_and_converges() {
    // A fixed seed unless one is given, so a failure can be replayed.
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261201);
    let work_dir = std::env::temp_dir().join(format!("dvt-chaos-{}", std::process::id()));
    let log_dir = work_dir.clone();
    let report = run(ChaosOptions {
        seed,
        faults_for: Duration::from_secs(30),
        settle_within: Duration::from_secs(120),
        work_dir: work_dir.clone(),
        operator: Box::new(move |name, kubeconfig, port| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_dvt-operator"));
            command
                .args(["run", "--leader-election", "--lease-duration-seconds", "3"])
                .args([
                    "--lease-namespace",
                    OPERATOR_NAMESPACE,
                    "--log-level",
                    "warn",
                ])
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["--metrics-address", &format!("127.0.0.1:{port}")])
                .env("POD_NAME", name);
            log_to(&mut command, &log_dir, name);
            command
        }),
    })
    .await
    .expect("the chaos run starts");
    println!("{}", report.render());
    let _ = std::fs::remove_dir_all(&work_dir);
    assert!(
        report.faults.values().sum::<usize>() >= 10,
        "{}",
        report.render()
    );
    assert!(report.passed(), "{}", report.render());
}
