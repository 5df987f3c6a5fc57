//! What the benchmark applies: the example manifest copied into many namespaces, applied with
//! bounded concurrency, on a simulated cluster started for the run.

use super::*;

/// The user agent of the client that plays the user applying DVs (and of the ceiling loop).
pub(super) const USER: &str = "dvt-bench";

pub(super) fn example(members: usize) -> Result<&'static str, String> {
    match members {
        4 => Ok(EXAMPLE_STADER_4),
        7 => Ok(EXAMPLE_STADER_7),
        other => Err(format!(
            "--members {other}: the benchmark copies examples/stader-4.yaml or stader-7.yaml; use 4 or 7"
        )),
    }
}

/// An object of the example manifest, as JSON for server-side apply.
pub(super) struct Document {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) body: serde_json::Value,
}

pub(super) fn documents(manifest: &str) -> Result<Vec<Document>, String> {
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
pub(super) async fn apply(
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

/// Applies every job, `concurrency` at a time.
pub(super) async fn apply_all(
    client: &kube::Client,
    jobs: Vec<Job>,
    concurrency: u16,
) -> Result<(), String> {
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

/// What a timed client loop of the benchmark (the ceiling's objects, the users' DVs) cost its
/// thread, and the niceness the kernel gave that thread.
pub(super) struct ClientLoop {
    pub(super) cpu_seconds: f64,
    pub(super) niceness: Option<i64>,
}

/// Applies every job, `concurrency` at a time, from a thread of its own at niceness `nice`
/// with a client (and connections) of its own. The timed loops are clients of the simulated
/// control plane as the operator is: at the operator's niceness, neither gets the cores before
/// the simulated controllers (a real cluster runs those on machines of their own), so the
/// ceiling's loop is not favoured over the operator it is compared with.
pub(super) async fn apply_all_as_client(
    config: kube::Config,
    jobs: Vec<Job>,
    concurrency: u16,
    nice: u8,
) -> Result<ClientLoop, String> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-client".to_owned())
        .spawn(move || {
            let run = || -> Result<ClientLoop, String> {
                let niceness = set_thread_niceness(nice)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("the client thread's runtime: {e}"))?;
                runtime.block_on(async {
                    let client = kube::Client::try_from(config)
                        .map_err(|e| format!("the client thread's client: {e}"))?;
                    apply_all(&client, jobs, concurrency).await
                })?;
                Ok(ClientLoop {
                    cpu_seconds: thread_cpu_seconds(),
                    niceness,
                })
            };
            let _ = done.send(run());
        })
        .map_err(|e| format!("starting the client thread: {e}"))?;
    outcome
        .await
        .map_err(|_| "the client thread ended without a result".to_owned())?
}

/// Prints what a client loop cost and at which niceness it ran.
pub(super) fn client_loop_line(label: &str, client_loop: &ClientLoop) {
    line(
        &format!("{label}: CPU / niceness"),
        format!(
            "{:.2} s / {}",
            client_loop.cpu_seconds,
            client_loop
                .niceness
                .map_or_else(|| "unknown".to_owned(), |nice| nice.to_string())
        ),
    );
}

/// Sets the calling thread's niceness (Linux keeps one per thread: `setpriority` with
/// `PRIO_PROCESS` and a thread id, see getpriority(2), BUGS) and returns it as
/// `/proc/self/task/<tid>/stat` shows it.
pub(super) fn set_thread_niceness(nice: u8) -> Result<Option<i64>, String> {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    let tid = unsafe { libc::gettid() };
    let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, i32::from(nice)) };
    if set != 0 {
        return Err(format!(
            "setting the client thread's niceness to {nice}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(
        std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .ok()
            .and_then(|stat| niceness(&stat)),
    )
}

/// The CPU time the calling thread has used.
fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return f64::NAN;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

pub(super) async fn start_world(options: &Options) -> Result<World, String> {
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

pub(super) async fn create_namespaces(
    world: &World,
    prefix: &str,
    options: &Options,
) -> Result<(), String> {
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
