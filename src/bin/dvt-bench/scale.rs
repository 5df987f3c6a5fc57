//! `dvt-bench scale`: N copies of an example DV, one namespace each. First the ceiling (the
//! objects the operator would create, applied by a plain client loop at the operator's
//! concurrency, until every member pod is Ready), then the operator itself in a process of its
//! own (time to every DV Available, writes against the minimum, API requests by verb, its peak
//! RSS and CPU time, reconcile latency from its `/metrics`), then a full resync (a restarted
//! operator) with nothing changed. Each run gets a fresh simulated cluster in this process.

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

/// What `scale` runs.
pub struct Options {
    pub dvs: usize,
    pub members: usize,
    pub nodes: usize,
    pub concurrency: u16,
    pub debounce: Duration,
    /// Skip the ceiling run (when profiling the operator alone).
    pub skip_ceiling: bool,
}

const ZONES: usize = 4;
/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What the run has done so far, for the progress lines: objects applied (by the ceiling loop or
/// the user), and DVs Available (from the DV watch).
static APPLIED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static AVAILABLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs `work`, printing one line on stderr every [`PROGRESS_EVERY`]: the phase, objects
/// applied, pods Ready (followed on the in-process timeline from `mark`), DVs Available, elapsed.
async fn with_progress<F: std::future::Future>(
    phase: &str,
    applying: &str,
    world: &World,
    mark: usize,
    totals: (usize, usize, usize),
    work: F,
) -> F::Output {
    use std::sync::atomic::Ordering;
    let (objects, pods, dvs) = totals;
    APPLIED.store(0, Ordering::Relaxed);
    AVAILABLE.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mut cursor = mark;
    let mut ready: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = tokio::time::sleep(PROGRESS_EVERY) => {
                let entries = world.sim.store().timeline_since(cursor);
                cursor += entries.len();
                for entry in entries {
                    if let Change::Readiness { namespace, pod, ready: now, .. } = entry.change {
                        ready.insert((namespace, pod), now);
                    }
                }
                let pods_ready = ready.values().filter(|r| **r).count();
                let dvs_line = if dvs > 0 {
                    format!(", DVs Available {}/{dvs}", AVAILABLE.load(Ordering::Relaxed))
                } else {
                    String::new()
                };
                eprintln!(
                    "[{:>6.0}s] {phase}: {applying} applied {}/{objects}, pods Ready {pods_ready}/{pods}{dvs_line}",
                    started.elapsed().as_secs_f64(),
                    APPLIED.load(Ordering::Relaxed),
                );
            }
        }
    }
}
/// The user agent of the client that plays the user applying DVs (and of the ceiling loop).
const USER: &str = "dvt-bench";

fn example(members: usize) -> Result<&'static str, String> {
    match members {
        4 => Ok(EXAMPLE_STADER_4),
        7 => Ok(EXAMPLE_STADER_7),
        other => Err(format!(
            "--members {other}: the benchmark copies examples/stader-4.yaml or stader-7.yaml; use 4 or 7"
        )),
    }
}

/// An object of the example manifest, as JSON for server-side apply.
struct Document {
    kind: String,
    name: String,
    body: serde_json::Value,
}

fn documents(manifest: &str) -> Result<Vec<Document>, String> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(manifest)
        .map(|document| {
            let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
            let body = serde_json::to_value(&value).map_err(|e| e.to_string())?;
            Ok(Document {
                kind: body["kind"].as_str().unwrap_or_default().to_owned(),
                name: body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body,
            })
        })
        .collect()
}

/// Server-side applies `body` (a `kind` this benchmark knows) into `namespace`.
async fn apply(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let params = PatchParams::apply(USER).force();
    let patch = Patch::Apply(body);
    let client = client.clone();
    let result = match kind {
        "ConfigMap" => Api::<ConfigMap>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "Secret" => Api::<Secret>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "DistributedValidator" => Api::<DistributedValidator>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "Service" => Api::<Service>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "PodDisruptionBudget" => Api::<PodDisruptionBudget>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "NetworkPolicy" => Api::<NetworkPolicy>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client, namespace)
            .patch(name, &params, &patch)
            .await
            .map(drop),
        other => return Err(format!("the benchmark does not apply {other}")),
    };
    result.map_err(|e| format!("applying {kind} {namespace}/{name}: {e}"))
}

/// One apply job: (namespace, kind, name, body).
type Job = (String, String, String, serde_json::Value);

/// Applies every job, `concurrency` at a time.
async fn apply_all(client: &kube::Client, jobs: Vec<Job>, concurrency: u16) -> Result<(), String> {
    futures::stream::iter(jobs)
        .map(|(namespace, kind, name, body)| async move {
            let applied = apply(client, &namespace, &kind, &name, &body).await;
            APPLIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            applied
        })
        .buffer_unordered(usize::from(concurrency.max(1)))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

async fn start_world(options: &Options) -> Result<World, String> {
    let world = World::start(WorldOptions {
        nodes: options.nodes,
        zones: ZONES,
        fast: true,
        operator: false,
        ..WorldOptions::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(world)
}

async fn create_namespaces(world: &World, prefix: &str, options: &Options) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(world.client.clone());
    futures::stream::iter(0..options.dvs)
        .map(|i| {
            let api = api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(
                    serde_json::json!({"metadata": {"name": format!("{prefix}-{i}")}}),
                )
                .map_err(|e| e.to_string())?;
                api.create(&Default::default(), &ns)
                    .await
                    .map(drop)
                    .map_err(|e| format!("creating namespace {prefix}-{i}: {e}"))
            }
        })
        .buffer_unordered(usize::from(options.concurrency.max(1)))
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// The ceiling: what the operator would create for every DV, applied by a client loop at the
/// operator's concurrency; the time until every member pod is Ready, and the objects applied.
async fn ceiling(options: &Options, manifest: &str) -> Result<(Duration, usize), String> {
    let world = start_world(options).await?;
    create_namespaces(&world, "ceiling", options).await?;
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
    let mark = world.sim.store().timeline_len();
    let started = Instant::now();
    let pods = options.dvs * options.members;
    with_progress(
        "ceiling",
        "objects",
        &world,
        mark,
        (objects, pods, 0),
        async {
            apply_all(&world.client, jobs, options.concurrency).await?;
            wait_for_ready_pods(&world, mark, pods, Duration::from_secs(600)).await
        },
    )
    .await?;
    Ok((started.elapsed(), objects))
}

/// Follows the simulator's timeline (in-process: polling it costs the API server nothing) until
/// `count` pods are Ready.
async fn wait_for_ready_pods(
    world: &World,
    mark: usize,
    count: usize,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut cursor = mark;
    let mut ready: BTreeMap<(String, String), bool> = BTreeMap::new();
    loop {
        let entries = world.sim.store().timeline_since(cursor);
        cursor += entries.len();
        for entry in entries {
            if let Change::Readiness {
                namespace,
                pod,
                ready: now,
                ..
            } = entry.change
            {
                ready.insert((namespace, pod), now);
            }
        }
        let ready_now = ready.values().filter(|r| **r).count();
        if ready_now >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "ceiling: {ready_now}/{count} pods Ready after {}s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Watches DVs until `dvs` of them report phase Available. A watch costs the simulator one
/// event per status write; polling lists of every DV would load it far more than the ceiling's
/// wait does (which follows the in-process timeline).
async fn wait_for_available(world: &World, dvs: usize, limit: Duration) -> Result<(), String> {
    use kube::runtime::watcher;
    let api: Api<DistributedValidator> = Api::all(world.client.clone());
    let mut available: std::collections::BTreeSet<(String, String)> = Default::default();
    let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| {
                format!(
                    "{}/{dvs} DVs Available after {}s",
                    available.len(),
                    limit.as_secs()
                )
            })?
            .ok_or("the DV watch ended")?
            .map_err(|e| e.to_string())?;
        let (dv, gone) = match event {
            watcher::Event::Apply(dv) | watcher::Event::InitApply(dv) => (dv, false),
            watcher::Event::Delete(dv) => (dv, true),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        let key = (
            dv.metadata.namespace.clone().unwrap_or_default(),
            dv.metadata.name.clone().unwrap_or_default(),
        );
        let is_available =
            !gone && dv.status.as_ref().and_then(|s| s.phase) == Some(Phase::Available);
        if is_available {
            available.insert(key);
        } else {
            available.remove(&key);
        }
        AVAILABLE.store(available.len(), std::sync::atomic::Ordering::Relaxed);
        if available.len() >= dvs {
            return Ok(());
        }
    }
}

/// The operator under measurement: `dvt-bench operator` (the same controller as
/// `dvt-operator run`) in a child process, so that its RSS and CPU time are its own.
struct OperatorProcess {
    child: Child,
    metrics: std::net::SocketAddr,
}

impl OperatorProcess {
    fn spawn(kubeconfig: &Path, log: &Path, options: &Options) -> Result<Self, String> {
        // A free port for /metrics: bound, read and released (the child binds it next).
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log_file =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = std::process::Command::new(exe)
            .arg("operator")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-address")
            .arg(metrics.to_string())
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--debounce-ms")
            .arg(options.debounce.as_millis().to_string())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting the operator process: {e}"))?;
        Ok(OperatorProcess { child, metrics })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.metrics, path).await
    }

    /// Waits until `/readyz` answers 200: the operator's caches have listed once.
    async fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        // Listing thousands of pods and StatefulSets from a busy simulator takes a while.
        let limit = Duration::from_secs(300);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the operator process exited ({status}); see {}",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the operator was not ready within {} s; see {}",
                    limit.as_secs(),
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reconciles(&self) -> Result<u64, String> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix("dvt_reconciles_total "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| "no dvt_reconciles_total in /metrics".to_owned())
    }
}

impl Drop for OperatorProcess {
    /// A benchmark that fails half-way must not leave an operator running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
async fn http_get(address: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// A field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`, the peak resident set).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// The operator's writes after `mark`, by resource, and its Events apart.
fn writes_by_operator(world: &World, mark: usize) -> (BTreeMap<String, usize>, usize) {
    let mut by_resource = BTreeMap::new();
    let mut events = 0;
    for entry in world.sim.store().timeline_since(mark) {
        if let Change::Write {
            resource, actor, ..
        } = entry.change
            && actor == FIELD_MANAGER
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

/// The operator's API requests by verb since `before`.
fn requests_since(
    world: &World,
    before: &BTreeMap<(String, &'static str), u64>,
) -> BTreeMap<&'static str, u64> {
    let mut by_verb = BTreeMap::new();
    for ((client, verb), count) in world.sim.requests() {
        if client == FIELD_MANAGER {
            let earlier = before
                .get(&(client.clone(), verb))
                .copied()
                .unwrap_or_default();
            if count > earlier {
                *by_verb.entry(verb).or_default() += count - earlier;
            }
        }
    }
    by_verb
}

fn line(label: &str, value: impl std::fmt::Display) {
    println!("{label:<58} {value}");
}

fn millis(seconds: Option<f64>) -> String {
    seconds.map_or("-".to_owned(), |s| format!("{:.2} ms", s * 1e3))
}

pub async fn scale(options: Options) -> Result<(), String> {
    let manifest = example(options.members)?;
    let dir = std::env::temp_dir().join(format!("dvt-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    let (dvs, members) = (options.dvs, options.members);
    let secs = |d: Duration| d.as_secs_f64();
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

    // 1. The ceiling, on a simulated cluster of its own; its figures as soon as it ends.
    let (ceiling, ceiling_objects) = if options.skip_ceiling {
        (Duration::ZERO, 0)
    } else {
        ceiling(&options, manifest).await?
    };
    line("ceiling: objects applied by a client loop", ceiling_objects);
    line(
        "ceiling: until every member pod Ready",
        format!("{:.2} s", secs(ceiling)),
    );

    // 2. The operator, on a fresh one: the users' lock and Secrets exist before it starts.
    let world = start_world(&options).await?;
    let kubeconfig = dir.join("operator.kubeconfig");
    world
        .write_operator_kubeconfig(&kubeconfig)
        .map_err(|e| e.to_string())?;
    create_namespaces(&world, "dv", &options).await?;
    let docs = documents(manifest)?;
    let jobs = |dv: bool| -> Vec<Job> {
        (0..options.dvs)
            .flat_map(|i| {
                docs.iter()
                    .filter(move |d| (d.kind == "DistributedValidator") == dv)
                    .map(move |d| {
                        (
                            format!("dv-{i}"),
                            d.kind.clone(),
                            d.name.clone(),
                            d.body.clone(),
                        )
                    })
            })
            .collect()
    };
    apply_all(&world.client, jobs(false), options.concurrency).await?;
    let log = dir.join("operator.log");
    let mut operator = OperatorProcess::spawn(&kubeconfig, &log, &options)?;
    operator.wait_ready(&log).await?;
    let requests_before = world.sim.requests();
    let mark = world.sim.store().timeline_len();
    let cpu_before = cpu_seconds(operator.pid());
    let started = Instant::now();
    let pods = options.dvs * options.members;
    with_progress(
        "operator",
        "DVs",
        &world,
        mark,
        (options.dvs, pods, options.dvs),
        async {
            apply_all(&world.client, jobs(true), options.concurrency).await?;
            wait_for_available(&world, options.dvs, Duration::from_secs(600)).await
        },
    )
    .await?;
    let converged = started.elapsed();
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
    line(
        "convergence / ceiling",
        format!("{:.2}", secs(converged) / secs(ceiling).max(1e-9)),
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
    // 3. A full resync with nothing changed: a restarted operator lists everything again and
    // reconciles every DV; it must write nothing.
    drop(operator);
    let resync_requests_before = world.sim.requests();
    let resync_mark = world.sim.store().timeline_len();
    let resync_started = Instant::now();
    let resync_log = dir.join("operator-resync.log");
    let mut operator = OperatorProcess::spawn(&kubeconfig, &resync_log, &options)?;
    operator.wait_ready(&resync_log).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while operator.reconciles().await? < options.dvs as u64 {
        if Instant::now() > deadline {
            return Err("the restarted operator did not reconcile every DV in 300 s".into());
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
    for (verb, count) in &resync_requests {
        line(&format!("resync: operator API requests: {verb}"), count);
    }
    if std::env::var_os("DVT_BENCH_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        line("operator logs", dir.display());
    }
    Ok(())
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
