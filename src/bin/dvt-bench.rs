//! Benchmarks of the operator on the embedded simulated cluster. Figures are printed, one per
//! line; nothing is asserted (timing depends on the machine).
//!
//! `cargo run --release --bin dvt-bench -- repair`: the time from a member becoming broken
//! (after its restart delay) to the operator restarting it, median and p99.
//!
//! `cargo run --release --bin dvt-bench -- lock-verify`: `lock::verify` on a 7-operator lock
//! with 100 validators, against the same blst operations called directly, as a ratio.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dvt_operator::api::{DistributedValidator, Phase};
use dvt_operator::controller::names::{FIELD_MANAGER, member_pod_name};
use dvt_operator::demo::{EXAMPLE_STADER_4, World, WorldOptions};
use dvt_sim::Fault;
use dvt_sim::timeline::Change;
use kube::api::Api;
use std::collections::BTreeMap;

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
    /// Scale: N copies of the 4-member example (one namespace each), first applied by a plain
    /// client loop (the ceiling), then by the operator; convergence, writes, resync writes.
    Scale {
        /// DistributedValidators.
        #[arg(long, default_value_t = 100)]
        dvs: usize,
        /// Requests in flight for the ceiling loop.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
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

/// Writes in the timeline after `mark` by `actor`, by verb (Events counted apart).
fn writes_by(world: &World, mark: usize, actor: &str) -> (BTreeMap<String, usize>, usize) {
    let mut by_resource = BTreeMap::new();
    let mut events = 0;
    for entry in world.sim.store().timeline_since(mark) {
        if let Change::Write {
            resource,
            actor: who,
            ..
        } = entry.change
            && who == actor
        {
            if resource.starts_with("events") {
                events += 1;
            } else {
                *by_resource.entry(resource).or_default() += 1;
            }
        }
    }
    (by_resource, events)
}

async fn all_available(world: &World, dvs: usize, limit: Duration) -> Result<(), String> {
    let api: Api<DistributedValidator> = Api::all(world.client.clone());
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let available = list
            .items
            .iter()
            .filter(|dv| dv.status.as_ref().and_then(|s| s.phase) == Some(Phase::Available))
            .count();
        if available >= dvs {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{available}/{dvs} DVs Available after {}s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_namespaces(world: &World, prefix: &str, count: usize) -> Result<(), String> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(world.client.clone());
    for i in 0..count {
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
            serde_json::json!({"metadata": {"name": format!("{prefix}-{i}")}}),
        )
        .map_err(|e| e.to_string())?;
        api.create(&Default::default(), &ns)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn scale(dvs: usize, concurrency: usize) -> Result<(), String> {
    use futures::{StreamExt, TryStreamExt};
    let world = World::start(WorldOptions {
        nodes: 64,
        zones: 4,
        operator: false,
        ..WorldOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("dvt-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("stader-4.yaml");
    std::fs::write(&file, EXAMPLE_STADER_4).map_err(|e| e.to_string())?;

    // 1. Ceiling: the operator's objects for each DV, applied by a plain client loop.
    create_namespaces(&world, "ceiling", dvs).await?;
    let zones = ["zone-a", "zone-b", "zone-c", "zone-d"]
        .into_iter()
        .map(|z| (z.to_owned(), 16))
        .collect();
    let (dv, facts) = dvt_operator::controller::model::manifest_facts(EXAMPLE_STADER_4, zones)?;
    let started = std::time::Instant::now();
    let params = kube::api::PatchParams::apply("ceiling").force();
    let mut jobs: Vec<(String, serde_json::Value, &'static str, String)> = Vec::new();
    for i in 0..dvs {
        let ns = format!("ceiling-{i}");
        let mut copy = dv.clone();
        copy.metadata.namespace = Some(ns.clone());
        copy.metadata.uid = Some(format!("ceiling-{i}"));
        let cluster =
            dvt_operator::controller::model::validate(&copy, &facts).map_err(|e| e.message())?;
        let desired = dvt_operator::controller::build::build(&cluster);
        for s in desired.services {
            jobs.push((
                ns.clone(),
                serde_json::to_value(&s).unwrap_or_default(),
                "services",
                s.metadata.name.clone().unwrap_or_default(),
            ));
        }
        jobs.push((
            ns.clone(),
            serde_json::to_value(&desired.pdb).unwrap_or_default(),
            "pdb",
            desired.pdb.metadata.name.clone().unwrap_or_default(),
        ));
        for s in desired.statefulsets {
            jobs.push((
                ns.clone(),
                serde_json::to_value(&s).unwrap_or_default(),
                "statefulsets",
                s.metadata.name.clone().unwrap_or_default(),
            ));
        }
    }
    let client = world.client.clone();
    futures::stream::iter(jobs)
        .map(|(ns, mut value, kind, name)| {
            let client = client.clone();
            let params = params.clone();
            async move {
                // The owner does not exist in the ceiling run: apply without the reference.
                if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    meta.remove("ownerReferences");
                }
                let patch = kube::api::Patch::Apply(&value);
                match kind {
                    "services" => {
                        Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, &ns)
                            .patch(&name, &params, &patch)
                            .await
                            .map(drop)
                    }
                    "pdb" => Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
                        client, &ns,
                    )
                    .patch(&name, &params, &patch)
                    .await
                    .map(drop),
                    _ => Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client, &ns)
                        .patch(&name, &params, &patch)
                        .await
                        .map(drop),
                }
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .map_err(|e| e.to_string())?;
    // Until every member pod of the ceiling runs and is ready.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(world.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let list = pods
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|n| n.starts_with("ceiling-"))
                    && dvt_operator::controller::status::pod_is_ready(p)
            })
            .count();
        if ready >= dvs * 4 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "ceiling: {ready}/{} pods ready after 600s",
                dvs * 4
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ceiling = started.elapsed();

    // 2. The operator, from DVs to all Available.
    create_namespaces(&world, "dv", dvs).await?;
    let mut world = world;
    let rss_before = rss_kib();
    let cpu_before = cpu_seconds();
    let mark = world.sim.store().timeline().len();
    world.start_operator().map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    for i in 0..dvs {
        world
            .apply_file(&file, &format!("dv-{i}"))
            .await
            .map_err(|e| e.to_string())?;
    }
    all_available(&world, dvs, Duration::from_secs(900)).await?;
    let converged = started.elapsed();
    let (writes, events) = writes_by(&world, mark, FIELD_MANAGER);
    let total_writes: usize = writes.values().sum();
    // The minimum: each object once, and one status write per DV.
    let minimum = dvs * (4 + 4 + 1 + 1) + dvs;

    // 3. A full resync with nothing changed: restart the operator, count its writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.stop_operator().await;
    let resync_mark = world.sim.store().timeline().len();
    world.start_operator().map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (resync, resync_events) = writes_by(&world, resync_mark, FIELD_MANAGER);

    let secs = |d: Duration| d.as_secs_f64();
    println!("DVs x members                            {dvs} x 4");
    println!(
        "ceiling (client loop, until pods ready)  {:>10.2} s",
        secs(ceiling)
    );
    println!(
        "operator convergence (until Available)   {:>10.2} s",
        secs(converged)
    );
    println!(
        "convergence / ceiling                    {:>10.2}",
        secs(converged) / secs(ceiling).max(1e-9)
    );
    for (resource, count) in &writes {
        println!("operator writes: {resource:<24} {count:>10}");
    }
    println!("operator writes (objects + status)       {total_writes:>10}");
    println!("operator Events written                  {events:>10}");
    println!("minimum writes (objects + 1 status each) {minimum:>10}");
    println!(
        "writes / minimum                         {:>10.2}",
        total_writes as f64 / minimum as f64
    );
    println!(
        "resync writes (objects + status)         {:>10}",
        resync.values().sum::<usize>()
    );
    println!("resync Events                            {resync_events:>10}");
    println!(
        "process RSS (sim + operator) before/after {:>8} / {} KiB",
        rss_before,
        rss_kib()
    );
    println!(
        "process CPU during convergence           {:>10.2} s",
        cpu_seconds() - cpu_before
    );
    Ok(())
}

/// Resident set size of this process (the simulator and the operator share it), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
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
    use dvt_operator::bls::{G1, Secret, split};
    let threshold = dvt_operator::quorum::default_threshold(operators as u32) as usize;
    let mut keys = Vec::with_capacity(validators);
    for _ in 0..validators {
        let secret = Secret::random().map_err(|e| e.to_string())?;
        let shares = split(&secret, operators, threshold).map_err(|e| e.to_string())?;
        keys.push((
            secret.public_key(),
            shares.iter().map(Secret::public_key).collect::<Vec<G1>>(),
        ));
    }
    let lock = dvt_operator::keys::lock_json(threshold, operators, &keys).to_string();
    let summary = dvt_operator::lock::summarize(&lock).map_err(|e| e.to_string())?;
    let compressed: Vec<([u8; 48], Vec<[u8; 48]>)> = keys
        .iter()
        .map(|(g, s)| (g.to_compressed(), s.iter().map(G1::to_compressed).collect()))
        .collect();
    let mut ours = Vec::with_capacity(rounds);
    let mut direct = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        let problems = dvt_operator::lock::verify(&summary);
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

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Scale { dvs, concurrency } => scale(dvs.max(1), concurrency.max(1)).await,
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
