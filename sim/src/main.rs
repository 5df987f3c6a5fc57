//! `dvt-sim`: serve the simulated Kubernetes API until interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dvt_sim::cluster::ReadinessRule;
use dvt_sim::{ClusterOptions, Fault, SimOptions, SimServer};

/// A simulated Kubernetes API server for testing dvt-operator without Docker or a real cluster.
///
/// It serves the Kubernetes API over HTTPS on 127.0.0.1 and writes an admin kubeconfig (CA and token), so kubectl
/// and kube-rs clients use it like a real cluster: discovery, CRDs, list/watch, server-side apply,
/// status subresources, finalizers, garbage collection and evictions.
#[derive(Parser, Debug)]
#[command(name = "dvt-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve until interrupted (Ctrl-C).
    ///
    /// Then, in another shell: `KUBECONFIG=<path> kubectl get namespaces`.
    Serve {
        /// Where to write the kubeconfig.
        #[arg(long, default_value = "dvt-sim.kubeconfig", value_name = "PATH")]
        kubeconfig: PathBuf,
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Simulated nodes (0: serve the API alone, with no cluster inside).
        #[arg(long, default_value_t = 8)]
        nodes: usize,
        /// Zones the nodes are spread over (`zone-a`, `zone-b`, ...).
        #[arg(long, default_value_t = 4)]
        zones: usize,
        /// Pace of pods starting, crashing and backing off: `human` (seconds, to follow with
        /// `kubectl get pods -w`) or `fast` (tens of milliseconds, for tests).
        #[arg(long, default_value = "human", value_parser = ["human", "fast"])]
        pace: String,
        /// Mimic Charon's readiness: a pod with this label is ready only while at least
        /// `--quorum-annotation` (on the pod) pods with the same label value run.
        #[arg(long, value_name = "LABEL")]
        quorum_label: Option<String>,
        /// The pod annotation holding the quorum for `--quorum-label`.
        #[arg(long, value_name = "ANNOTATION", default_value = "dvt.io/threshold")]
        quorum_annotation: String,
    },
    /// Inject a fault into a running `dvt-sim serve`.
    Fault {
        /// The kubeconfig `serve` wrote.
        #[arg(long, default_value = "dvt-sim.kubeconfig", value_name = "PATH")]
        kubeconfig: PathBuf,
        #[command(subcommand)]
        fault: FaultCommand,
    },
    /// Write a kubeconfig that acts as a ServiceAccount of a running `dvt-sim serve`, with a
    /// token from the TokenRequest API (as `kubectl create token` gets one). For example, the
    /// operator's: `dvt-sim kubeconfig --service-account dvt-system/dvt-operator --out op.kubeconfig`.
    Kubeconfig {
        /// The admin kubeconfig `serve` wrote.
        #[arg(long, default_value = "dvt-sim.kubeconfig", value_name = "PATH")]
        kubeconfig: PathBuf,
        /// `NAMESPACE/NAME` of a ServiceAccount that exists.
        #[arg(long, value_name = "NAMESPACE/NAME")]
        service_account: String,
        /// Where to write the ServiceAccount's kubeconfig.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Measure the simulator's ceiling through kube-rs: sustained writes per second, list
    /// latency and watch fan-out. Prints one figure per line. Build with --release.
    Bench {
        /// Objects created and listed.
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Timed lists of every object.
        #[arg(long, default_value_t = 20)]
        lists: usize,
        /// Watch streams open at once for the fan-out figure.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        /// Writes every watcher must see.
        #[arg(long, default_value_t = 1_000)]
        fan_out_writes: usize,
    },
}

#[derive(Subcommand, Debug)]
enum FaultCommand {
    /// A container exits with an error once, then restarts.
    CrashOnce {
        pod: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// One container (default: all).
        #[arg(short, long)]
        container: Option<String>,
    },
    /// Containers exit after every start: CrashLoopBackOff.
    CrashLoop {
        pod: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long)]
        container: Option<String>,
        /// Exit as OOMKilled instead of Error.
        #[arg(long)]
        oom: bool,
    },
    /// The pod's images cannot be pulled: ImagePullBackOff.
    ImagePull {
        pod: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Every image containing IMAGE fails to pull.
    BadImage {
        image: String,
    },
    /// Undo `bad-image`.
    FixImage {
        image: String,
    },
    /// Init containers named CONTAINER end with EXIT_CODE and MESSAGE as their termination
    /// message (the simulator runs no script): non-zero holds their pods in Init:CrashLoopBackOff.
    InitStep {
        container: String,
        /// Only in images containing this.
        #[arg(long)]
        image: Option<String>,
        #[arg(long, default_value_t = 0)]
        exit_code: i32,
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Undo `init-step`.
    ClearInitStep {
        container: String,
    },
    /// The pod runs but is not ready.
    Unready {
        pod: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// The pod's liveness probe fails: its containers are killed and restarted.
    Unlive {
        pod: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Clear every fault of a pod.
    Heal {
        pod: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// The node stops reporting: NotReady; its pods lose readiness and stay bound.
    FailNode {
        node: String,
    },
    RestoreNode {
        node: String,
    },
    /// Every node of the zone fails.
    FailZone {
        zone: String,
    },
    RestoreZone {
        zone: String,
    },
    /// API server faults for a fraction of resource requests (all zero: none).
    Api {
        #[arg(long, default_value_t = 0.0)]
        error_fraction: f64,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        #[arg(long, default_value_t = 0.0)]
        watch_drop_fraction: f64,
    },
}

impl FaultCommand {
    fn into_fault(self) -> Fault {
        match self {
            FaultCommand::CrashOnce {
                pod,
                namespace,
                container,
            } => Fault::CrashOnce {
                namespace,
                pod,
                container,
            },
            FaultCommand::CrashLoop {
                pod,
                namespace,
                container,
                oom,
            } => Fault::CrashLoop {
                namespace,
                pod,
                container,
                oom,
            },
            FaultCommand::ImagePull { pod, namespace } => Fault::ImagePull { namespace, pod },
            FaultCommand::BadImage { image } => Fault::BadImage { image },
            FaultCommand::FixImage { image } => Fault::FixImage { image },
            FaultCommand::InitStep {
                container,
                image,
                exit_code,
                message,
            } => Fault::InitStep {
                container,
                image,
                exit_code,
                message,
            },
            FaultCommand::ClearInitStep { container } => Fault::ClearInitStep { container },
            FaultCommand::Unready { pod, namespace } => Fault::Unready { namespace, pod },
            FaultCommand::Unlive { pod, namespace } => Fault::Unlive { namespace, pod },
            FaultCommand::Heal { pod, namespace } => Fault::Heal { namespace, pod },
            FaultCommand::FailNode { node } => Fault::FailNode { node },
            FaultCommand::RestoreNode { node } => Fault::RestoreNode { node },
            FaultCommand::FailZone { zone } => Fault::FailZone { zone },
            FaultCommand::RestoreZone { zone } => Fault::RestoreZone { zone },
            FaultCommand::Api {
                error_fraction,
                latency_ms,
                watch_drop_fraction,
            } => Fault::Api(dvt_sim::cluster::faults::ApiFaults {
                error_fraction,
                latency_ms,
                watch_drop_fraction,
                slow_clients: Vec::new(),
                failing_gets: Vec::new(),
            }),
        }
    }
}

/// Writes a kubeconfig for a ServiceAccount: the admin's file with the user's token replaced by
/// one the server issues for that ServiceAccount, in its namespace.
async fn service_account_kubeconfig(
    kubeconfig: &std::path::Path,
    service_account: &str,
    out: &std::path::Path,
) -> Result<(), String> {
    let (namespace, name) = service_account
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .ok_or_else(|| format!("--service-account {service_account:?} is not NAMESPACE/NAME"))?;
    let mut file = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("cannot read {}: {e}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        file.clone(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("cannot use {}: {e}", kubeconfig.display()))?;
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client, namespace);
    let request = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    let answer: serde_json::Value = accounts
        .create_subresource("token", name, &Default::default(), &request)
        .await
        .map_err(|e| format!("cannot get a token for {service_account}: {e}"))?;
    let token = answer
        .pointer("/status/token")
        .and_then(serde_json::Value::as_str)
        .ok_or("the server answered without a token")?
        .to_owned();
    for user in &mut file.auth_infos {
        user.name = format!("{namespace}-{name}");
        if let Some(info) = user.auth_info.as_mut() {
            info.token = Some(token.clone().into());
        }
    }
    for context in &mut file.contexts {
        if let Some(context) = context.context.as_mut() {
            context.user = Some(format!("{namespace}-{name}"));
            context.namespace = Some(namespace.to_owned());
        }
    }
    let text = serde_yaml::to_string(&file).map_err(|e| e.to_string())?;
    std::fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// Sends a fault to a running simulator through the kubeconfig's server address.
async fn send_fault(kubeconfig: &std::path::Path, fault: Fault) -> Result<(), String> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("cannot read {}: {e}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| format!("cannot use {}: {e}", kubeconfig.display()))?;
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&fault).map_err(|e| e.to_string())?;
    let request = http::Request::post("/sim/v1/faults")
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map(drop)
        .map_err(|e| format!("the simulator refused the fault: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (kubeconfig, port, cluster) = match Cli::parse().command {
        Command::Serve {
            kubeconfig,
            port,
            nodes,
            zones,
            pace,
            quorum_label,
            quorum_annotation,
        } => {
            let cluster = (nodes > 0).then(|| {
                let base = if pace == "fast" {
                    ClusterOptions::fast()
                } else {
                    ClusterOptions::default()
                };
                ClusterOptions {
                    nodes,
                    zones: zones.max(1),
                    readiness_rules: quorum_label
                        .map(|group_label| ReadinessRule {
                            group_label,
                            min_running: 1,
                            min_running_annotation: Some(quorum_annotation),
                        })
                        .into_iter()
                        .collect(),
                    ..base
                }
            });
            (kubeconfig, port, cluster)
        }
        Command::Kubeconfig {
            kubeconfig,
            service_account,
            out,
        } => {
            return match service_account_kubeconfig(&kubeconfig, &service_account, &out).await {
                Ok(()) => {
                    println!(
                        "kubeconfig for {service_account} written to {}",
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Fault { kubeconfig, fault } => {
            return match send_fault(&kubeconfig, fault.into_fault()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Bench {
            objects,
            concurrency,
            lists,
            watchers,
            fan_out_writes,
        } => {
            let options = dvt_sim::bench::BenchOptions {
                objects,
                concurrency: concurrency.max(1),
                lists: lists.max(1),
                watchers,
                fan_out_writes,
            };
            println!(
                "dvt-sim bench: {objects} objects, concurrency {}, {watchers} watchers x {fan_out_writes} writes",
                options.concurrency
            );
            return match dvt_sim::bench::run(&options).await {
                Ok(figures) => {
                    for figure in figures {
                        println!("{figure}");
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let server = match SimServer::start(SimOptions {
        port,
        cluster,
        ..SimOptions::default()
    })
    .await
    {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = server.write_kubeconfig(&kubeconfig) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    println!(
        "dvt-sim serving {} ; kubeconfig written to {}",
        server.url(),
        kubeconfig.display()
    );
    println!(
        "try: KUBECONFIG={} kubectl get nodes,pods -A",
        kubeconfig.display()
    );
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
    ExitCode::SUCCESS
}
