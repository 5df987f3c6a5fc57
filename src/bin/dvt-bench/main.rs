//! Benchmarks of the operator on the embedded simulated cluster. Figures are printed, one per
//! line; nothing is asserted (timing depends on the machine).
//!
//! `cargo run --release --bin dvt-bench -- repair`: the time from a member becoming broken
//! (after its restart delay) to the operator restarting it, median and p99.
//!
//! `cargo run --release --bin dvt-bench -- lock-verify`: `lock::verify` on a 7-operator lock
//! with 100 validators, against the same blst operations called directly, as a ratio.
//!
//! `cargo run --release --bin dvt-bench -- scale --dvs 1000 --members 4`: convergence of N DVs
//! against a plain client loop's ceiling, writes against the minimum, API requests, the
//! operator's peak RSS, CPU time and reconcile latency, and the writes of a full resync.

mod allocator;
mod scale;

#[global_allocator]
static ALLOCATOR: allocator::BenchAllocator = allocator::BenchAllocator::new();

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
    /// Lock verification: `lock::verify` on a lock of `--validators` validators split among
    /// `--operators` operators, against the blst operations it performs, called directly.
    LockVerify {
        #[arg(long, default_value_t = 7)]
        operators: usize,
        #[arg(long, default_value_t = 100)]
        validators: usize,
        /// Timed rounds of each; the median is reported.
        #[arg(long, default_value_t = 15)]
        rounds: usize,
    },
    /// Scale: N copies of an example DV (one namespace each): the ceiling (a plain client loop
    /// applying what the operator would), and the operator in a process of its own followed by
    /// a full resync; each phase on a simulated cluster in a process of its own.
    Scale {
        /// DistributedValidators.
        #[arg(long, default_value_t = 100)]
        dvs: usize,
        /// Members per DV: 4 or 7 (examples/stader-4.yaml or stader-7.yaml).
        #[arg(long, default_value_t = 4)]
        members: usize,
        /// Simulated nodes, spread over four zones. Default: 64, and more beyond 1,000 DVs of 4
        /// members (about 62 member pods per node, as at 1,000): a node takes 110 pods and 8
        /// CPUs, so 12,000 pods do not fit on 64 nodes and the run would never converge.
        #[arg(long)]
        nodes: Option<usize>,
        /// The operator's concurrent reconciles, and the ceiling loop's requests in flight.
        #[arg(long, default_value_t = dvt_operator::controller::DEFAULT_CONCURRENCY)]
        concurrency: u16,
        /// The operator's debounce.
        #[arg(long, default_value_t = dvt_operator::controller::DEFAULT_DEBOUNCE.as_millis() as u64)]
        debounce_ms: u64,
        /// Skip the ceiling (to profile the operator alone).
        #[arg(long)]
        skip_ceiling: bool,
        /// Runs of both phases, each phase in a process of its own; odd runs measure the
        /// ceiling first, even runs the operator first. The spread of each figure is printed.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// The operator process's niceness (0 to 19). On a real cluster the operator has CPU of
        /// its own, apart from the control plane and the kubelets it waits for; here the
        /// simulated control plane and the operator share this machine's cores. By default the
        /// simulated controllers get the CPU first and the operator the rest, so that the ratio
        /// measures what the operator's requests and decisions cost the rollout, not its CPU
        /// taken from simulated machines (its CPU time is printed apart). 0 shares the cores
        /// equally (see e2e/benchmarks-log-2026-11-24-to-2026-12-06.md for both). The benchmark's timed client loops (the
        /// ceiling's objects, the user's DVs) run at the same niceness, so that the ceiling's
        /// client is not favoured over the operator it is compared with.
        #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(u8).range(0..=19))]
        operator_nice: u8,
        /// Run one phase in this process (what each run starts), writing its figures to
        /// `--result`.
        #[arg(long, value_enum, hide = true)]
        phase: Option<scale::PhaseKind>,
        #[arg(long, hide = true)]
        result: Option<std::path::PathBuf>,
    },
    /// The operator process that `scale` measures (the controller of `dvt-operator run`).
    #[command(hide = true)]
    Operator {
        #[arg(long)]
        kubeconfig: std::path::PathBuf,
        #[arg(long)]
        metrics_address: std::net::SocketAddr,
        #[arg(long)]
        concurrency: u16,
        #[arg(long)]
        debounce_ms: u64,
        /// Run with leader election on a Lease of this many seconds.
        #[arg(long)]
        lease_seconds: Option<u64>,
    },
    /// Chaos: a seeded random sequence of faults (crash and OOM loops, node and zone failures,
    /// operator kill -9 and leader failover between two operator processes, API error bursts,
    /// dropped watches, rollouts, hand-edits of children) over a 4- and a 7-member DV; prints the
    /// seed, the faults and each invariant's verdict. Exits non-zero when one is broken.
    Chaos {
        /// Seconds of faults.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The seed (printed; the same seed replays the same choices). Default: from the clock.
        #[arg(long)]
        seed: Option<u64>,
        /// Seconds the DVs have to converge once everything healed.
        #[arg(long, default_value_t = 180)]
        settle_seconds: u64,
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

/// The blst work of verifying one validator, called directly on compressed points: decompress
/// and check every point, then for `t` shares the Lagrange coefficients at 0 and at every other
/// share's x, a multi-scalar sum per evaluation, and a comparison. This is the floor
/// `lock::verify` is measured against (it adds hex decoding, error reporting and allocation).
mod raw {
    use blst::*;

    fn fr(value: u64) -> blst_fr {
        let mut out = blst_fr::default();
        let limbs = [value, 0, 0, 0];
        // SAFETY: four readable limbs; writable output.
        unsafe { blst_fr_from_uint64(&mut out, limbs.as_ptr()) };
        out
    }

    fn lagrange(xs: &[u64], at: u64) -> Vec<blst_scalar> {
        let at = fr(at);
        xs.iter()
            .map(|&xi| {
                let (mut num, mut den) = (fr(1), fr(1));
                for &xj in xs.iter().filter(|&&xj| xj != xi) {
                    let (mut a, mut b) = (blst_fr::default(), blst_fr::default());
                    // SAFETY: initialised inputs, writable outputs; xi != xj so b != 0.
                    unsafe {
                        blst_fr_sub(&mut a, &at, &fr(xj));
                        blst_fr_sub(&mut b, &fr(xi), &fr(xj));
                        let n = num;
                        blst_fr_mul(&mut num, &n, &a);
                        let d = den;
                        blst_fr_mul(&mut den, &d, &b);
                    }
                }
                let (mut inv, mut c, mut scalar) = (
                    blst_fr::default(),
                    blst_fr::default(),
                    blst_scalar::default(),
                );
                // SAFETY: as above.
                unsafe {
                    blst_fr_inverse(&mut inv, &den);
                    blst_fr_mul(&mut c, &num, &inv);
                    blst_scalar_from_fr(&mut scalar, &c);
                }
                scalar
            })
            .collect()
    }

    /// Returns whether the validator verifies.
    pub fn verify(group: &[u8; 48], shares: &[[u8; 48]], threshold: usize) -> bool {
        let decode = |bytes: &[u8; 48]| {
            let mut affine = blst_p1_affine::default();
            let mut point = blst_p1::default();
            // SAFETY: 48 readable bytes; writable outputs; `affine` read only after success.
            unsafe {
                if blst_p1_uncompress(&mut affine, bytes.as_ptr()) != BLST_ERROR::BLST_SUCCESS
                    || blst_p1_affine_is_inf(&affine)
                    || !blst_p1_affine_in_g1(&affine)
                {
                    return None;
                }
                blst_p1_from_affine(&mut point, &affine);
            }
            Some(point)
        };
        let Some(group) = decode(group) else {
            return false;
        };
        let Some(points) = shares.iter().map(decode).collect::<Option<Vec<_>>>() else {
            return false;
        };
        let xs: Vec<u64> = (1..=threshold as u64).collect();
        let evaluate = |at: u64| {
            let mut sum = blst_p1::default();
            for (i, c) in lagrange(&xs, at).iter().enumerate() {
                let mut term = blst_p1::default();
                // SAFETY: initialised point and scalar (32 bytes); writable outputs.
                unsafe {
                    blst_p1_mult(&mut term, &points[i], c.b.as_ptr(), 255);
                    if i == 0 {
                        sum = term;
                    } else {
                        let s = sum;
                        blst_p1_add_or_double(&mut sum, &s, &term);
                    }
                }
            }
            sum
        };
        // SAFETY: initialised points.
        if !unsafe { blst_p1_is_equal(&evaluate(0), &group) } {
            return false;
        }
        (threshold..shares.len()).all(|i| {
            // SAFETY: initialised points.
            unsafe { blst_p1_is_equal(&evaluate(i as u64 + 1), &points[i]) }
        })
    }
}

fn lock_verify(operators: usize, validators: usize, rounds: usize) -> Result<(), String> {
    use dvt_operator::crypto::bls::{G1, Secret, split};
    let threshold = dvt_operator::domain::quorum::default_threshold(operators as u32) as usize;
    let mut keys = Vec::with_capacity(validators);
    for _ in 0..validators {
        let secret = Secret::random().map_err(|e| e.to_string())?;
        let shares = split(&secret, operators, threshold).map_err(|e| e.to_string())?;
        keys.push((
            secret.public_key(),
            shares.iter().map(Secret::public_key).collect::<Vec<G1>>(),
        ));
    }
    let lock = dvt_operator::crypto::split::lock_json(threshold, operators, &keys).to_string();
    let summary = dvt_operator::crypto::lock::summarize(&lock).map_err(|e| e.to_string())?;
    let compressed: Vec<([u8; 48], Vec<[u8; 48]>)> = keys
        .iter()
        .map(|(g, s)| (g.to_compressed(), s.iter().map(G1::to_compressed).collect()))
        .collect();
    let mut ours = Vec::with_capacity(rounds);
    let mut direct = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        let problems = dvt_operator::crypto::lock::verify(&summary);
        ours.push(started.elapsed());
        if !problems.is_empty() {
            return Err(format!("the generated lock does not verify: {problems:?}"));
        }
        let started = std::time::Instant::now();
        let all = compressed.iter().all(|(g, s)| raw::verify(g, s, threshold));
        direct.push(started.elapsed());
        if !all {
            return Err("the raw blst check refused the generated lock".into());
        }
    }
    ours.sort();
    direct.sort();
    let (ours, direct) = (percentile(&ours, 50.0), percentile(&direct, 50.0));
    let evaluations = 1 + operators - threshold;
    println!("lock: {operators} operators, threshold {threshold}, {validators} validators");
    println!(
        "blst operations per validator: {} point decompressions with subgroup checks, {} G1 scalar multiplications, {} Lagrange coefficient sets",
        operators + 1,
        evaluations * threshold,
        evaluations
    );
    println!(
        "lock::verify (median of {rounds}): {:.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "raw blst operations (median of {rounds}): {:.1} ms",
        direct.as_secs_f64() * 1e3
    );
    println!(
        "per validator: {:.0} µs vs {:.0} µs raw",
        ours.as_secs_f64() * 1e6 / validators as f64,
        direct.as_secs_f64() * 1e6 / validators as f64
    );
    println!(
        "ratio lock::verify / raw blst: {:.2}",
        ours.as_secs_f64() / direct.as_secs_f64()
    );
    Ok(())
}

async fn chaos(seconds: u64, seed: Option<u64>, settle_seconds: u64) -> Result<(), String> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let executable = std::env::current_exe().map_err(|e| e.to_string())?;
    let work_dir = std::env::temp_dir().join(format!("dvt-bench-chaos-{seed}"));
    let logs = work_dir.clone();
    println!(
        "chaos: seed {seed}, {seconds} s of faults; operator logs in {}",
        work_dir.display()
    );
    let started = std::time::Instant::now();
    let report = dvt_operator::chaos::run(dvt_operator::chaos::ChaosOptions {
        seed,
        faults_for: Duration::from_secs(seconds),
        settle_within: Duration::from_secs(settle_seconds),
        work_dir,
        operator: Box::new(move |name, kubeconfig, port| {
            let mut command = std::process::Command::new(&executable);
            command
                .arg("operator")
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["--metrics-address", &format!("127.0.0.1:{port}")])
                .args([
                    "--concurrency",
                    "16",
                    "--debounce-ms",
                    "500",
                    "--lease-seconds",
                    "3",
                ])
                .env("POD_NAME", name);
            dvt_operator::chaos::log_to(&mut command, &logs, name);
            command
        }),
    })
    .await?;
    print!("{}", report.render());
    println!("total run time {:.0} s", started.elapsed().as_secs_f64());
    if report.passed() {
        Ok(())
    } else {
        Err(format!(
            "an invariant was broken (replay with --seed {seed})"
        ))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Scale {
            dvs,
            members,
            nodes,
            concurrency,
            debounce_ms,
            skip_ceiling,
            runs,
            operator_nice,
            phase,
            result,
        } => {
            scale::scale(scale::Options {
                skip_ceiling,
                runs: runs.max(1),
                operator_nice,
                phase,
                result,
                dvs: dvs.max(1),
                members,
                nodes: nodes
                    .unwrap_or_else(|| ((dvs * members).div_ceil(250) * 4).max(64))
                    .max(members),
                concurrency: concurrency.max(1),
                debounce: Duration::from_millis(debounce_ms),
            })
            .await
        }
        Command::Operator {
            kubeconfig,
            metrics_address,
            concurrency,
            debounce_ms,
            lease_seconds,
        } => {
            scale::operator(
                kubeconfig,
                metrics_address,
                concurrency.max(1),
                Duration::from_millis(debounce_ms),
                lease_seconds,
            )
            .await
        }
        Command::Chaos {
            seconds,
            seed,
            settle_seconds,
        } => chaos(seconds, seed, settle_seconds).await,
        Command::LockVerify {
            operators,
            validators,
            rounds,
        } => lock_verify(operators.max(1), validators.max(1), rounds.max(1)),
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
