//! Benchmarks of the operator on the embedded simulated cluster. Figures are printed, one per
//! line; nothing is asserted (timing depends on the machine).
//!
//! `cargo run --release --bin dvt-bench -- repair`: the time from a member becoming broken
//! (after its restart delay) to the operator restarting it, median and p99.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dvt_operator::api::{DistributedValidator, Phase};
use dvt_operator::controller::names::{FIELD_MANAGER, member_pod_name};
use dvt_operator::demo::{EXAMPLE_STADER_4, World, WorldOptions};
use dvt_sim::Fault;
use dvt_sim::timeline::Change;
use kube::api::Api;

#[derive(Parser, Debug)]
#[command(name = "dvt-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Repair latency: crash-loop a member, time from "broken for restartDelaySeconds" to the
    /// operator's restart.
    Repair {
        /// Crashes to measure (members take turns).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// The DV's restartDelaySeconds.
        #[arg(long, default_value_t = 1)]
        restart_delay_seconds: u32,
    },
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn wait_until<F: Fn(&DistributedValidator) -> bool>(
    api: &Api<DistributedValidator>,
    check: F,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if let Ok(dv) = api.get("stader-4").await
            && check(&dv)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("timed out waiting for stader-4".into())
}

async fn repair(rounds: usize, restart_delay_seconds: u32) -> Result<(), String> {
    let world = World::start(WorldOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("dvt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("stader-4.yaml");
    let spec = format!(
        "\nspec:\n  rollout: {{minReadySeconds: 0, restartDelaySeconds: {restart_delay_seconds}, restartBackoffSeconds: 1, maxRestartBackoffSeconds: 1}}\n"
    );
    std::fs::write(&file, EXAMPLE_STADER_4.replace("\nspec:\n", &spec))
        .map_err(|e| e.to_string())?;
    world
        .apply_file(&file, "default")
        .await
        .map_err(|e| e.to_string())?;
    let api: Api<DistributedValidator> = Api::default_namespaced(world.client.clone());
    let available = |dv: &DistributedValidator| {
        dv.status.as_ref().and_then(|s| s.phase) == Some(Phase::Available)
    };
    wait_until(&api, available).await?;
    let delay = Duration::from_secs(u64::from(restart_delay_seconds));
    let mut latencies = Vec::with_capacity(rounds);
    let members = ["alpha", "bravo", "charlie", "delta"];
    for round in 0..rounds {
        let member = members[round % members.len()];
        let pod = member_pod_name("stader-4", member);
        let mark = world.sim.store().timeline().len();
        world
            .sim
            .inject(Fault::CrashLoop {
                namespace: "default".into(),
                pod: pod.clone(),
                container: None,
                oom: false,
            })
            .map_err(|e| e.to_string())?;
        // Wait for the operator's restart of that pod, then for the DV to recover.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let (down, restarted) = loop {
            let entries = world.sim.store().timeline_since(mark);
            let down = entries.iter().find_map(|e| match &e.change {
                Change::Readiness {
                    pod: p,
                    ready: false,
                    ..
                } if *p == pod => Some(e.at),
                _ => None,
            });
            let restarted = entries.iter().find_map(|e| match &e.change {
                Change::Write {
                    resource,
                    name,
                    actor,
                    ..
                } if resource == "pods" && *name == pod && actor == FIELD_MANAGER => Some(e.at),
                _ => None,
            });
            if let (Some(down), Some(restarted)) = (down, restarted) {
                break (down, restarted);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("round {round}: the operator did not restart {pod}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        latencies.push(restarted.saturating_sub(down));
        wait_until(&api, available).await?;
    }
    latencies.sort();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    // The operator counts the delay from the pod's Ready transition, which Kubernetes records
    // in whole seconds; it rounds up, so it restarts up to a second after the delay, never before.
    let beyond = |d: Duration| millis(d) - millis(delay);
    println!("repair rounds                           {rounds:>10}");
    println!(
        "restart delay                           {:>10.1} ms",
        millis(delay)
    );
    println!(
        "unready-to-restart, median              {:>10.1} ms",
        millis(percentile(&latencies, 50.0))
    );
    println!(
        "unready-to-restart, p99                 {:>10.1} ms",
        millis(percentile(&latencies, 99.0))
    );
    println!(
        "beyond the restart delay, median        {:>10.1} ms",
        beyond(percentile(&latencies, 50.0))
    );
    println!(
        "beyond the restart delay, p99           {:>10.1} ms",
        beyond(percentile(&latencies, 99.0))
    );
    println!(
        "beyond the restart delay, min           {:>10.1} ms",
        beyond(latencies.first().copied().unwrap_or_default())
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Repair {
            rounds,
            restart_delay_seconds,
        } => repair(rounds.max(1), restart_delay_seconds).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
