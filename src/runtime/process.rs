//! The `dvt-operator run` process: its flags, logging, the Kubernetes client, stop signals,
//! and the controller (alone or under leader election) beside the metrics endpoint.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `dvt-operator run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Namespace to watch; repeat for several. Unset watches all namespaces.
    #[arg(
        long = "namespace",
        short = 'n',
        value_name = "NAMESPACE",
        env = "DVT_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Kubeconfig file. Unset uses $KUBECONFIG, ~/.kube/config, then in-cluster config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "DVT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (e.g. `info,dvt_operator=debug`).
    #[arg(long, default_value = "info", env = "DVT_LOG_LEVEL")]
    pub log_level: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        value_name = "ADDR",
        env = "DVT_METRICS_ADDRESS"
    )]
    pub metrics_address: std::net::SocketAddr,
    /// Run only while holding a Lease, so that one of several replicas reconciles.
    #[arg(long, env = "DVT_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "dvt-operator-leader")]
    pub lease_name: String,
    /// Seconds a Lease holds without renewal; a standby takes over after that.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// DistributedValidators reconciled at the same time.
    #[arg(long, default_value_t = crate::controller::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..), env = "DVT_CONCURRENCY")]
    pub concurrency: u16,
    /// Milliseconds a DV's changes are gathered before one reconcile handles them all.
    #[arg(long, default_value_t = crate::controller::DEFAULT_DEBOUNCE.as_millis() as u64, env = "DVT_DEBOUNCE_MS")]
    pub debounce_ms: u64,
    /// Milliseconds between reads of the members' Charon monitoring endpoints (who answers, who
    /// is not ready and why).
    #[arg(long, default_value_t = crate::controller::DEFAULT_PEER_READ_EVERY.as_millis() as u64, env = "DVT_PEER_READ_INTERVAL_MS")]
    pub peer_read_interval_ms: u64,
    /// Milliseconds within which a member must have been seen answering to count as up (a
    /// remote member counts toward quorum only so).
    #[arg(long, default_value_t = crate::controller::DEFAULT_PEER_SEEN_WITHIN.as_millis() as u64, env = "DVT_PEER_SEEN_WITHIN_MS")]
    pub peer_seen_within_ms: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to standard error in `format`, filtered by `filter` (`RUST_LOG` syntax).
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves when the process is asked to stop (SIGTERM from Kubernetes, or Ctrl-C).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A client from `kubeconfig`, or the inferred one (in-cluster config included).
async fn client_for(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("cannot use kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no kubeconfig or in-cluster config found: {e}"))?,
    };
    crate::controller::identify(&mut config);
    kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

/// `dvt-operator run`: the controller (elected or alone) and its metrics endpoint, until SIGTERM.
pub fn run(args: &RunArgs) -> ExitCode {
    init_logging(args.log_format, &args.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match client_for(args.kubeconfig.as_ref()).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        let scope = crate::controller::Settings {
            namespaces: args.namespaces.clone(),
            concurrency: args.concurrency,
            debounce: std::time::Duration::from_millis(args.debounce_ms),
            fence: crate::runtime::leader::Fence::default(),
            peer_read_every: std::time::Duration::from_millis(args.peer_read_interval_ms.max(10)),
            peer_seen_within: std::time::Duration::from_millis(args.peer_seen_within_ms),
        };
        tracing::info!(namespaces = ?scope.namespaces, leader_election = args.leader_election, "dvt-operator starting");
        let metrics = std::sync::Arc::new(crate::runtime::metrics::Metrics::default());
        let (stop_all, _) = tokio::sync::broadcast::channel::<()>(1);
        let stopped = {
            let mut receiver = stop_all.subscribe();
            async move {
                let _ = receiver.recv().await;
            }
        };
        let server = tokio::spawn(crate::runtime::metrics::serve(args.metrics_address, metrics.clone(), stopped));
        if args.leader_election {
            let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("dvt-operator-{}", std::process::id()));
            let lease = crate::runtime::leader::LeaseConfig::new(
                &args.lease_name,
                &args.lease_namespace,
                &identity,
                std::time::Duration::from_secs(args.lease_duration_seconds.max(2)),
            );
            // A standby is ready (it serves and waits); the leader's readiness is its caches'.
            metrics.set_ready(true);
            crate::controller::run_elected(client, scope, lease, metrics.clone(), stop_requested()).await;
        } else {
            metrics.set_leader(true);
            crate::controller::run_with_metrics(client, scope, metrics, stop_requested()).await;
        }
        let _ = stop_all.send(());
        if let Ok(Err(error)) = server.await {
            eprintln!(
                "error: the metrics endpoint on {} failed: {error}",
                args.metrics_address
            );
            return ExitCode::FAILURE;
        }
        tracing::info!("dvt-operator stopped");
        ExitCode::SUCCESS
    })
}
