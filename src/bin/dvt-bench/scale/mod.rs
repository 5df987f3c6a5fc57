//! `dvt-bench scale`: N copies of an example DV, one namespace each. Two phases, each in a
//! benchmark process of its own with a fresh simulated cluster: the ceiling (the objects the
//! operator would create, applied by a plain client loop at the operator's concurrency, until
//! every member pod is Ready), and the operator itself in a process of its own (time to every DV
//! Available, writes against the minimum, API requests by verb, its peak RSS and CPU time,
//! reconcile latency from its `/metrics`) followed by a full resync (a restarted operator) with
//! nothing changed. `--runs` repeats both and prints the spread.

mod load;
mod measure;
mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dvt_operator::api::{DistributedValidator, Phase};
use dvt_operator::controller::names::FIELD_MANAGER;
use dvt_operator::demo::{EXAMPLE_STADER_4, EXAMPLE_STADER_7, World, WorldOptions};
use dvt_sim::ClusterOptions;
use dvt_sim::timeline::Change;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use load::*;
use measure::*;
use process::*;

/// What `scale` runs.
pub struct Options {
    pub dvs: usize,
    pub members: usize,
    pub nodes: usize,
    pub concurrency: u16,
    pub debounce: Duration,
    /// Skip the ceiling run (when profiling the operator alone).
    pub skip_ceiling: bool,
    /// How many times both phases run (see [`scale`]).
    pub runs: usize,
    /// The operator process's niceness, and that of the timed client loops (the ceiling's, the
    /// user's DVs): 19 gives the simulated controllers the CPU first (on a real cluster they run
    /// on machines of their own), 0 shares it equally.
    pub operator_nice: u8,
    /// Run only this phase, in this process, and write its figures to `result`.
    pub phase: Option<PhaseKind>,
    pub result: Option<PathBuf>,
}

/// The two phases of a run, each measured in a process of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseKind {
    Ceiling,
    Operator,
}

impl PhaseKind {
    fn argument(self) -> &'static str {
        match self {
            PhaseKind::Ceiling => "ceiling",
            PhaseKind::Operator => "operator",
        }
    }
}

const ZONES: usize = 4;

/// How long a phase may take before the run fails: ten minutes, and more for runs beyond 1,000
/// DVs (a 1,000-DV phase takes two to four minutes here).
fn phase_limit(options: &Options) -> Duration {
    Duration::from_secs(600).max(Duration::from_millis(600 * options.dvs as u64))
}

/// What the run has done so far, for the progress lines: objects applied (by the ceiling loop or
/// the user), and DVs Available (from the DV watch).
static APPLIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

static AVAILABLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One apply job: (namespace, kind, name, body).
type Job = (String, String, String, serde_json::Value);

/// The users' inputs of every DV (its lock ConfigMap and Secrets, the example's documents other
/// than the DV) in namespaces `{prefix}-{i}`, or the DVs themselves (`dv`).
fn user_jobs(docs: &[Document], prefix: &str, dvs: usize, dv: bool) -> Vec<Job> {
    (0..dvs)
        .flat_map(|i| {
            docs.iter()
                .filter(move |d| (d.kind == "DistributedValidator") == dv)
                .map(move |d| {
                    (
                        format!("{prefix}-{i}"),
                        d.kind.clone(),
                        d.name.clone(),
                        d.body.clone(),
                    )
                })
        })
        .collect()
}

/// The ceiling: what the operator would create for every DV, applied by a client loop at the
/// operator's concurrency; the time until every member pod is Ready, and the objects applied.
/// The users' locks and Secrets exist first, as in the operator's run: a member's simulated
/// Charon starts only with a lock to read, and the simulated cluster holds the same objects in
/// both runs.
async fn ceiling(options: &Options, manifest: &str) -> Result<(Duration, usize), String> {
    let world = start_world(options).await?;
    create_namespaces(&world, "ceiling", options).await?;
    let inputs = user_jobs(&documents(manifest)?, "ceiling", options.dvs, false);
    apply_all(&world.client, inputs, options.concurrency).await?;
    let zones = (0..ZONES)
        .map(|i| (ClusterOptions::zone_name(i), options.nodes / ZONES))
        .collect();
    let (dv, facts) = dvt_operator::controller::validate::manifest_facts(manifest, zones)?;
    let mut jobs: Vec<Job> = Vec::new();
    for i in 0..options.dvs {
        let namespace = format!("ceiling-{i}");
        let mut copy = dv.clone();
        copy.metadata.namespace = Some(namespace.clone());
        copy.metadata.uid = Some(format!("ceiling-{i}"));
        let cluster =
            dvt_operator::controller::validate::validate(&copy, &facts).map_err(|e| e.message())?;
        let desired = dvt_operator::controller::build::build(&cluster);
        let mut push =
            |kind: &str, name: Option<String>, value: serde_json::Result<serde_json::Value>| {
                let mut body = value.map_err(|e| e.to_string())?;
                body["kind"] = serde_json::json!(kind);
                // The owner does not exist in the ceiling run: apply without the reference.
                if let Some(meta) = body.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    meta.remove("ownerReferences");
                }
                jobs.push((
                    namespace.clone(),
                    kind.to_owned(),
                    name.unwrap_or_default(),
                    body,
                ));
                Ok::<(), String>(())
            };
        // In the operator's order: Services, the budget, the policy, StatefulSets last.
        for s in &desired.services {
            push("Service", s.metadata.name.clone(), serde_json::to_value(s))?;
        }
        push(
            "PodDisruptionBudget",
            desired.pdb.metadata.name.clone(),
            serde_json::to_value(&desired.pdb),
        )?;
        if let Some(policy) = &desired.network_policy {
            push(
                "NetworkPolicy",
                policy.metadata.name.clone(),
                serde_json::to_value(policy),
            )?;
        }
        for s in &desired.statefulsets {
            push(
                "StatefulSet",
                s.metadata.name.clone(),
                serde_json::to_value(s),
            )?;
        }
    }
    for job in &mut jobs {
        let version = match job.1.as_str() {
            "Service" => "v1",
            "PodDisruptionBudget" => "policy/v1",
            "NetworkPolicy" => "networking.k8s.io/v1",
            _ => "apps/v1",
        };
        job.3["apiVersion"] = serde_json::json!(version);
    }
    let objects = jobs.len();
    let config = world.user_config().map_err(|e| e.to_string())?;
    let mark = world.sim.store().timeline_len();
    take_pass_stats(&world);
    let process_cpu_before = cpu_seconds(std::process::id());
    let clock = world.sim.store().clock();
    let started = Instant::now();
    let pods = options.dvs * options.members;
    let client_loop = with_progress(
        "ceiling",
        "objects",
        &world,
        mark,
        (objects, pods, 0),
        None,
        async {
            let client_loop =
                apply_all_as_client(config, jobs, options.concurrency, options.operator_nice)
                    .await?;
            wait_for_ready_pods(&world, mark, pods, phase_limit(options)).await?;
            Ok::<_, String>(client_loop)
        },
    )
    .await?;
    let took = started.elapsed();
    client_loop_line("ceiling: client loop", &client_loop);
    milestone_lines(
        "ceiling",
        &milestones(&world, mark, clock, options.dvs * options.members),
    );
    pass_line(
        "ceiling",
        &take_pass_stats(&world),
        cpu_seconds(std::process::id()) - process_cpu_before,
        &writes_by_actor(&world, mark),
    );
    Ok((took, objects))
}

/// `dvt-bench scale`: each phase in a process of its own (`--phase`), `--runs` times, the
/// order of the two phases alternating from run to run; then the spread of the ratios.
///
/// A phase run second in one process ran on a heap that had held and freed a whole simulated
/// cluster, and took up to half as long again (see e2e/benchmarks-log-2026-11-24-to-2026-12-06.md, 2026-12-04): a ratio of
/// two phases means something only when both start alike.
pub async fn scale(options: Options) -> Result<(), String> {
    if let Some(phase) = options.phase {
        let result = match phase {
            PhaseKind::Ceiling => ceiling_phase(&options).await?,
            PhaseKind::Operator => operator_phase(&options).await?,
        };
        if let Some(path) = &options.result {
            let text = serde_json::to_string(&result).map_err(|e| e.to_string())?;
            std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        return Ok(());
    }
    let (dvs, members) = (options.dvs, options.members);
    line("DVs x members", format!("{dvs} x {members}"));
    line(
        "simulated nodes / zones",
        format!("{} / {ZONES}", options.nodes),
    );
    line(
        "operator concurrency / debounce",
        format!(
            "{} / {} ms",
            options.concurrency,
            options.debounce.as_millis()
        ),
    );
    line(
        "niceness of the operator and the benchmark's timed loops",
        match options.operator_nice {
            0 => "0 (the cores shared equally with the simulated cluster)".to_owned(),
            nice => format!("{nice} (the simulated controllers get the CPU first)"),
        },
    );
    line(
        "memory allocator, simulated cluster / operator",
        format!(
            "{} / system (glibc malloc), as dvt-operator",
            crate::ALLOCATOR.name()
        ),
    );
    let dir = std::env::temp_dir().join(format!("dvt-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut runs: Vec<(Option<PhaseResult>, PhaseResult)> = Vec::new();
    for run in 1..=options.runs {
        let order: &[PhaseKind] = if options.skip_ceiling {
            &[PhaseKind::Operator]
        } else if run % 2 == 1 {
            &[PhaseKind::Ceiling, PhaseKind::Operator]
        } else {
            &[PhaseKind::Operator, PhaseKind::Ceiling]
        };
        let (mut ceiling, mut operator) = (None, None);
        for &phase in order {
            println!(
                "--- run {run} of {}: {phase:?}, in a process of its own",
                options.runs
            );
            let result = spawn_phase(
                phase,
                &options,
                &dir.join(format!("run-{run}-{phase:?}.json")),
            )?;
            match phase {
                PhaseKind::Ceiling => ceiling = Some(result),
                PhaseKind::Operator => operator = Some(result),
            }
        }
        let operator = operator.ok_or("every run has an operator phase")?;
        if let Some(ceiling) = &ceiling {
            line(
                &format!("run {run}: convergence / ceiling"),
                format!(
                    "{:.2} ({:.2} s / {:.2} s)",
                    operator.seconds / ceiling.seconds.max(1e-9),
                    operator.seconds,
                    ceiling.seconds
                ),
            );
        }
        runs.push((ceiling, operator));
    }
    println!("--- summary of {} run(s)", runs.len());
    let spread = |values: Vec<f64>, unit: &str, digits: usize| {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let listed: Vec<String> = values.iter().map(|v| format!("{v:.digits$}")).collect();
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        format!(
            "median {median:.digits$}{unit}, min {:.digits$}, max {:.digits$} ({})",
            sorted.first().copied().unwrap_or(f64::NAN),
            sorted.last().copied().unwrap_or(f64::NAN),
            listed.join(", ")
        )
    };
    let ceilings: Vec<f64> = runs
        .iter()
        .filter_map(|(c, _)| c.as_ref().map(|c| c.seconds))
        .collect();
    if !ceilings.is_empty() {
        line(
            "ceiling: until every member pod Ready",
            spread(ceilings, " s", 2),
        );
        line(
            "convergence / ceiling",
            spread(
                runs.iter()
                    .filter_map(|(c, o)| Some(o.seconds / c.as_ref()?.seconds.max(1e-9)))
                    .collect(),
                "",
                2,
            ),
        );
    }
    line(
        "operator: until every DV Available",
        spread(runs.iter().map(|(_, o)| o.seconds).collect(), " s", 2),
    );
    line(
        "writes / minimum",
        spread(
            runs.iter()
                .filter_map(|(_, o)| o.writes_over_minimum)
                .collect(),
            "",
            3,
        ),
    );
    line(
        "operator peak RSS",
        spread(
            runs.iter()
                .filter_map(|(_, o)| o.operator_peak_mib)
                .collect(),
            " MiB",
            1,
        ),
    );
    line(
        "resync writes",
        spread(
            runs.iter().filter_map(|(_, o)| o.resync_writes).collect(),
            "",
            0,
        ),
    );
    line(
        "simulator + benchmark peak RSS, any phase",
        format!(
            "{:.1} MiB",
            runs.iter()
                .flat_map(|(c, o)| c.iter().chain([o]))
                .map(|r| r.process_peak_mib)
                .fold(0.0, f64::max)
        ),
    );
    if std::env::var_os("DVT_BENCH_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        line("operator logs", dir.display());
    }
    Ok(())
}

/// Runs one phase as `dvt-bench scale --phase …` (its lines print as it goes) and reads its
/// figures back.
fn spawn_phase(phase: PhaseKind, options: &Options, result: &Path) -> Result<PhaseResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = std::process::Command::new(exe)
        .arg("scale")
        .args(["--phase", phase.argument()])
        .arg("--result")
        .arg(result)
        .args(["--dvs", &options.dvs.to_string()])
        .args(["--members", &options.members.to_string()])
        .args(["--nodes", &options.nodes.to_string()])
        .args(["--concurrency", &options.concurrency.to_string()])
        .args(["--debounce-ms", &options.debounce.as_millis().to_string()])
        .args(["--operator-nice", &options.operator_nice.to_string()])
        .status()
        .map_err(|e| format!("starting the {phase:?} phase: {e}"))?;
    if !status.success() {
        return Err(format!("the {phase:?} phase failed ({status})"));
    }
    let text = std::fs::read_to_string(result)
        .map_err(|e| format!("reading {}: {e}", result.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", result.display()))
}

/// The ceiling phase: its figures as it ends.
async fn ceiling_phase(options: &Options) -> Result<PhaseResult, String> {
    let manifest = example(options.members)?;
    let (took, objects) = ceiling(options, manifest).await?;
    line("ceiling: objects applied by a client loop", objects);
    line(
        "ceiling: until every member pod Ready",
        format!("{:.2} s", took.as_secs_f64()),
    );
    let process_peak_mib = proc_status_kib(std::process::id(), "VmHWM") as f64 / 1024.0;
    line(
        "ceiling: simulator + benchmark process peak RSS",
        format!("{process_peak_mib:.1} MiB"),
    );
    Ok(PhaseResult {
        seconds: took.as_secs_f64(),
        process_peak_mib,
        ..PhaseResult::default()
    })
}

/// The operator phase: the operator in a process of its own on a fresh simulated cluster (the
/// users' lock and Secrets exist before it starts), then a full resync.
async fn operator_phase(options: &Options) -> Result<PhaseResult, String> {
    let manifest = example(options.members)?;
    let dir = std::env::temp_dir().join(format!("dvt-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (dvs, members) = (options.dvs, options.members);
    let secs = |d: Duration| d.as_secs_f64();
    let world = start_world(options).await?;
    let kubeconfig = dir.join("operator.kubeconfig");
    world
        .write_operator_kubeconfig(&kubeconfig)
        .map_err(|e| e.to_string())?;
    create_namespaces(&world, "dv", options).await?;
    let docs = documents(manifest)?;
    let jobs = |dv: bool| user_jobs(&docs, "dv", options.dvs, dv);
    apply_all(&world.client, jobs(false), options.concurrency).await?;
    let log = dir.join("operator.log");
    let mut operator = OperatorProcess::spawn(&kubeconfig, &log, options)?;
    operator.wait_ready(&log).await?;
    line(
        "operator process niceness (read from /proc)",
        operator
            .niceness()
            .map_or_else(|| "unknown".to_owned(), |nice| nice.to_string()),
    );
    line(
        "operator memory allocator (read from /proc)",
        operator.allocator().unwrap_or("unknown"),
    );
    let config = world.user_config().map_err(|e| e.to_string())?;
    let requests_before = world.sim.requests();
    let mark = world.sim.store().timeline_len();
    let cpu_before = cpu_seconds(operator.pid());
    let pages_before = dvt_sim::cluster::charon::pages_served();
    take_pass_stats(&world);
    let process_cpu_before = cpu_seconds(std::process::id());
    let clock = world.sim.store().clock();
    let started = Instant::now();
    let pods = options.dvs * options.members;
    let user = with_progress(
        "operator",
        "DVs",
        &world,
        mark,
        (options.dvs, pods, options.dvs),
        Some(operator.pid()),
        async {
            let user = apply_all_as_client(
                config,
                jobs(true),
                options.concurrency,
                options.operator_nice,
            )
            .await?;
            wait_for_available(&world, options.dvs, phase_limit(options)).await?;
            Ok::<_, String>(user)
        },
    )
    .await?;
    let converged = started.elapsed();
    client_loop_line("operator: the user's loop applying DVs", &user);
    let charon_pages = dvt_sim::cluster::charon::pages_served() - pages_before;
    milestone_lines("operator", &milestones(&world, mark, clock, pods));
    let passes = take_pass_stats(&world);
    let process_cpu = cpu_seconds(std::process::id()) - process_cpu_before;
    let cpu = cpu_seconds(operator.pid()) - cpu_before;
    let peak_rss = proc_status_kib(operator.pid(), "VmHWM");
    let (_, exposition) = operator.get("/metrics").await?;
    let (writes, events) = writes_by_operator(&world, mark);
    let requests = requests_since(&world, &requests_before);
    let reconciles = operator.reconciles().await?;

    // The minimum: every object once, and two status writes per DV (one saying the spec was
    // seen and members are starting, one saying Available).
    let objects = dvs * (2 * members + 2);
    let minimum = objects + 2 * dvs;
    let floor = objects + dvs;
    let total: usize = writes.values().sum();
    let q = |name: &str, q: f64| dvt_operator::runtime::metrics::quantile(&exposition, name, q);

    line(
        "operator: until every DV Available",
        format!("{:.2} s", secs(converged)),
    );
    for (resource, count) in &writes {
        line(&format!("operator writes: {resource}"), count);
    }
    line("operator writes (objects + status)", total);
    line("minimum (objects once + 2 status writes per DV)", minimum);
    line(
        "writes / minimum",
        format!("{:.3}", total as f64 / minimum as f64),
    );
    line(
        "writes / floor (objects once + 1 status write per DV)",
        format!("{:.3}", total as f64 / floor as f64),
    );
    line(
        "operator Events written (per DV)",
        format!("{events} ({:.2})", events as f64 / dvs as f64),
    );
    for (verb, count) in &requests {
        line(&format!("operator API requests: {verb}"), count);
    }
    line("reconciles", reconciles);
    line(
        "simulated Charon monitoring pages read (peer monitor)",
        charon_pages,
    );
    line(
        "reconcile duration median / p99",
        format!(
            "{} / {}",
            millis(q("dvt_reconcile_duration_seconds", 0.5)),
            millis(q("dvt_reconcile_duration_seconds", 0.99))
        ),
    );
    line(
        "reconcile excluding API and cache waits median / p99",
        format!(
            "{} / {}",
            millis(q("dvt_reconcile_compute_seconds", 0.5)),
            millis(q("dvt_reconcile_compute_seconds", 0.99))
        ),
    );
    line(
        "operator peak RSS (VmHWM)",
        format!("{:.1} MiB", peak_rss as f64 / 1024.0),
    );
    line("operator CPU time until converged", format!("{cpu:.2} s"));
    line(
        "simulator + benchmark process peak RSS",
        format!(
            "{:.1} MiB",
            proc_status_kib(std::process::id(), "VmHWM") as f64 / 1024.0
        ),
    );
    pass_line(
        "operator",
        &passes,
        process_cpu,
        &writes_by_actor(&world, mark),
    );
    let (history_events, history_bytes) = world.sim.store().history_size();
    line(
        "simulator watch history kept (events / MiB)",
        format!(
            "{history_events} / {:.1}",
            history_bytes as f64 / (1 << 20) as f64
        ),
    );
    line(
        "simulator timeline entries",
        world.sim.store().timeline_len(),
    );
    // 3. A full resync with nothing changed: a restarted operator lists everything again and
    // reconciles every DV; it must write nothing.
    drop(operator);
    let resync_requests_before = world.sim.requests();
    let resync_mark = world.sim.store().timeline_len();
    let resync_started = Instant::now();
    let resync_log = dir.join("operator-resync.log");
    let mut operator = OperatorProcess::spawn(&kubeconfig, &resync_log, options)?;
    operator.wait_ready(&resync_log).await?;
    let deadline = Instant::now() + phase_limit(options) / 2;
    while operator.reconciles().await? < options.dvs as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "the restarted operator did not reconcile every DV in {} s",
                (phase_limit(options) / 2).as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resync_took = resync_started.elapsed();
    // Late writes of the last reconciles (and their debounced follow-ups) would land by now.
    tokio::time::sleep(options.debounce + Duration::from_secs(2)).await;
    let resync_reconciles = operator.reconciles().await?;
    let (resync_writes, resync_events) = writes_by_operator(&world, resync_mark);
    let resync_requests = requests_since(&world, &resync_requests_before);
    drop(operator);

    line(
        "resync: restart until every DV reconciled",
        format!("{:.2} s", secs(resync_took)),
    );
    line("resync: reconciles", resync_reconciles);
    line(
        "resync: writes (objects + status)",
        resync_writes.values().sum::<usize>(),
    );
    line("resync: Events written", resync_events);
    for (reason, (count, example)) in events_by_reason(&world, resync_mark) {
        line(
            &format!("resync: Events: {reason}"),
            format!("{count}, e.g. {example:?}"),
        );
    }
    for (verb, count) in &resync_requests {
        line(&format!("resync: operator API requests: {verb}"), count);
    }
    drop(world);
    if std::env::var_os("DVT_BENCH_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        line("operator logs", dir.display());
    }
    Ok(PhaseResult {
        seconds: secs(converged),
        process_peak_mib: proc_status_kib(std::process::id(), "VmHWM") as f64 / 1024.0,
        writes_over_minimum: Some(total as f64 / minimum as f64),
        operator_peak_mib: Some(peak_rss as f64 / 1024.0),
        resync_writes: Some(resync_writes.values().sum::<usize>() as f64),
    })
}

/// What a phase's process reports back to the run that started it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PhaseResult {
    /// Until every member pod Ready (ceiling) or every DV Available (operator).
    seconds: f64,
    /// The phase's process: simulator and benchmark.
    process_peak_mib: f64,
    writes_over_minimum: Option<f64>,
    operator_peak_mib: Option<f64>,
    resync_writes: Option<f64>,
}

/// `dvt-bench operator`: the controller `dvt-operator run` runs (no leader election), with
/// `/metrics`, until killed.
pub async fn operator(
    kubeconfig: PathBuf,
    metrics_address: std::net::SocketAddr,
    concurrency: u16,
    debounce: Duration,
    lease_seconds: Option<u64>,
) -> Result<(), String> {
    // DVT_BENCH_LOG (RUST_LOG syntax) lets a profile look inside, e.g. `dvt_operator=debug`.
    let wanted = std::env::var("DVT_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(wanted)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let file = kube::config::Kubeconfig::read_from(&kubeconfig)
        .map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    dvt_operator::controller::identify(&mut config);
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let metrics = std::sync::Arc::new(dvt_operator::runtime::metrics::Metrics::default());
    metrics.set_leader(true);
    let server = tokio::spawn(dvt_operator::runtime::metrics::serve(
        metrics_address,
        metrics.clone(),
        futures::future::pending(),
    ));
    let settings = dvt_operator::controller::Settings {
        namespaces: Vec::new(),
        concurrency,
        debounce,
        fence: dvt_operator::runtime::leader::Fence::default(),
        ..dvt_operator::controller::Settings::default()
    };
    match lease_seconds {
        // With leader election, as `dvt-operator run --leader-election` (chaos runs two).
        Some(seconds) => {
            metrics.set_leader(false);
            let identity = std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("bench-{}", std::process::id()));
            let lease = dvt_operator::runtime::leader::LeaseConfig::new(
                "dvt-operator-leader",
                // The chart's Role allows the Lease in the release namespace only.
                dvt_operator::demo::OPERATOR_NAMESPACE,
                &identity,
                Duration::from_secs(seconds.max(2)),
            );
            dvt_operator::controller::run_elected(
                client,
                settings,
                lease,
                metrics,
                futures::future::pending::<()>(),
            )
            .await;
        }
        None => {
            dvt_operator::controller::run_with_metrics(
                client,
                settings,
                metrics,
                futures::future::pending(),
            )
            .await;
        }
    }
    server.abort();
    Ok(())
}
