//! The `dvt-operator` command: run the operator, print its CRD, or check resources offline.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dvt_operator::{crdgen, manifest};

/// Runs Distributed Validator (DVT) clusters on Kubernetes.
///
/// A DistributedValidator resource describes one Charon cluster: its lock, its beacon nodes and
/// its members, each holding one key share. The operator runs each member as its own StatefulSet,
/// spreads members across zones, validator clients and operators, and never takes the cluster
/// below its signing threshold.
#[derive(Parser, Debug)]
#[command(name = "dvt-operator", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the DistributedValidator CustomResourceDefinition as YAML.
    ///
    /// Install it with `dvt-operator crd | kubectl apply -f -`.
    Crd,
    /// Check DistributedValidator resources offline, before applying them.
    ///
    /// Reads multi-document YAML (other kinds are skipped) and prints every problem with its
    /// field path, e.g. `spec.members[2].index: duplicate share index 1`. Exits 1 when any
    /// resource has an error, 0 when all are valid (warnings are printed but do not fail).
    Validate {
        /// File to check; `-` reads standard input. Repeat to check several files.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print where the operator would place a DV's members (zones, clients) on a set of nodes,
    /// and how many zone, client, operator and class failures it survives.
    ///
    /// Example: `kubectl get nodes -o yaml > nodes.yaml; dvt-operator plan -f dv.yaml --nodes nodes.yaml`
    Plan {
        /// File with the DistributedValidator (the first one is planned).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// `kubectl get nodes -o yaml` output.
        #[arg(long, value_name = "FILE")]
        nodes: PathBuf,
    },
    /// Work with Charon cluster locks.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Key tools for test networks: split BLS secrets into EIP-2335 key shares, check a share set.
    ///
    /// The operator never needs these (it reads only public keys); they make real, verifiable
    /// key shares for test networks and kind clusters. Do not use them for mainnet keys: a real
    /// cluster's shares come from Charon's DKG, so no machine ever holds the whole key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the operator against the cluster in the current kubeconfig (or in-cluster config).
    Run(RunArgs),
    /// Show the operator at work on an embedded simulated cluster (no Docker needed): a
    /// 4-member DV converges, survives a zone outage and a crash, and heals.
    #[cfg(feature = "demo")]
    Demo {
        /// Keep the cluster running afterwards and write its kubeconfig here, for kubectl.
        #[arg(long, value_name = "KUBECONFIG", num_args = 0..=1, default_missing_value = "dvt-demo.kubeconfig")]
        serve: Option<PathBuf>,
        /// Run at test speed (milliseconds) instead of a pace a person can follow.
        #[arg(long)]
        fast: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LockCommand {
    /// Verify a cluster-lock.json: for every validator, one public share per operator, every
    /// point a valid BLS12-381 G1 key, and any `threshold` shares interpolating to the
    /// distributed public key. Prints a line per validator; exits 1 when any fails.
    Verify {
        /// The lock file (`-` reads standard input).
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Shamir-split BLS secret keys into `--shares` EIP-2335 keystores each (any `--threshold`
    /// of which can sign), with password files and a lock-shaped `cluster-lock.json` of the
    /// public shares. Layout: `OUT/cluster-lock.json`, `OUT/node{i}/validator_keys/keystore-{v}.json`
    /// and `keystore-{v}.txt`. OUT must not exist or be empty.
    Split {
        /// Number of shares (operators).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        shares: u32,
        /// Shares needed to sign; default ceil(2n/3).
        #[arg(long)]
        threshold: Option<u32>,
        /// File with the secret keys to split, one hex key per line; random keys when absent.
        #[arg(long, value_name = "FILE", conflicts_with = "validators")]
        secret_key_file: Option<PathBuf>,
        /// Number of random validator keys to make (without --secret-key-file).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        validators: u32,
        /// Key derivation function of the keystores.
        #[arg(long, value_enum, default_value_t = KdfChoice::Scrypt)]
        kdf: KdfChoice,
        /// Cheap KDF parameters (scrypt N = 2^10, PBKDF2 1,024 rounds) for throwaway test keys;
        /// the default is the EIP's (N = 2^18, 262,144 rounds).
        #[arg(long)]
        insecure_fast_kdf: bool,
        /// One password for every keystore (first line of FILE); random per keystore otherwise.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Decrypt a split's shares and prove them: each matches the lock's public share, and every
    /// `t`-subset of partial signatures combines (Lagrange in G2) to a signature that verifies
    /// against the group key. Prints a line per validator; exits 1 on any problem.
    Check {
        /// The directory `keys split` wrote.
        dir: PathBuf,
        /// One password for every keystore; otherwise each `keystore-{v}.txt` beside its keystore.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KdfChoice {
    Scrypt,
    Pbkdf2,
}

/// Flags of `dvt-operator run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespace to watch; repeat for several. Unset watches all namespaces.
    #[arg(
        long = "namespace",
        short = 'n',
        value_name = "NAMESPACE",
        env = "DVT_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Kubeconfig file. Unset uses $KUBECONFIG, ~/.kube/config, then in-cluster config.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "DVT_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (e.g. `info,dvt_operator=debug`).
    #[arg(long, default_value = "info", env = "DVT_LOG_LEVEL")]
    log_level: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        value_name = "ADDR",
        env = "DVT_METRICS_ADDRESS"
    )]
    metrics_address: std::net::SocketAddr,
    /// Run only while holding a Lease, so that one of several replicas reconciles.
    #[arg(long, env = "DVT_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "dvt-operator-leader")]
    lease_name: String,
    /// Seconds a Lease holds without renewal; a standby takes over after that.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// DistributedValidators reconciled at the same time.
    #[arg(long, default_value_t = dvt_operator::controller::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..), env = "DVT_CONCURRENCY")]
    concurrency: u16,
    /// Milliseconds a DV's changes are gathered before one reconcile handles them all.
    #[arg(long, default_value_t = dvt_operator::controller::DEFAULT_DEBOUNCE.as_millis() as u64, env = "DVT_DEBOUNCE_MS")]
    debounce_ms: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print_crd(),
        Command::Validate { files } => validate(&files),
        Command::Plan { file, nodes } => plan(&file, &nodes),
        Command::Lock(LockCommand::Verify { file }) => lock_verify(&file),
        Command::Keys(command) => keys(command),
        Command::Run(args) => run(&args),
        #[cfg(feature = "demo")]
        Command::Demo { serve, fast } => demo(serve, fast),
    }
}

fn print_crd() -> ExitCode {
    match crdgen::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot render the CRD: {error}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    let mut resources = 0;
    for path in files {
        let shown = if path.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let text = match read_input(path) {
            Ok(text) => text,
            Err(error) => {
                println!("{shown}: error: cannot read: {error}");
                failed = true;
                continue;
            }
        };
        let checked = match manifest::check_manifests(&text) {
            Ok(checked) => checked,
            Err(error) => {
                println!("{shown}: error: {error}");
                failed = true;
                continue;
            }
        };
        if checked.is_empty() {
            println!("{shown}: error: no DistributedValidator found");
            failed = true;
        }
        for resource in checked {
            resources += 1;
            println!("{shown}: {resource}");
            for problem in &resource.report.problems {
                println!("  {problem}");
            }
            failed |= resource.report.has_errors();
        }
    }
    if failed {
        println!("{resources} DistributedValidator(s) checked: errors found");
        ExitCode::FAILURE
    } else {
        println!("{resources} DistributedValidator(s) checked: all valid");
        ExitCode::SUCCESS
    }
}

#[cfg(feature = "demo")]
fn demo(serve: Option<PathBuf>, fast: bool) -> ExitCode {
    // The operator's own logs would drown the story; warnings still show.
    init_logging(LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dvt_operator::demo::run_demo(
        dvt_operator::demo::DemoOptions { serve, fast },
    )) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn plan(file: &PathBuf, nodes: &PathBuf) -> ExitCode {
    let read = |path: &PathBuf| {
        read_input(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let result = read(file)
        .and_then(|dv| Ok((dv, read(nodes)?)))
        .and_then(|(dv, nodes)| {
            let dv = dvt_operator::plan::read_dv(&dv).map_err(|e| e.to_string())?;
            let nodes = dvt_operator::plan::read_nodes(&nodes).map_err(|e| e.to_string())?;
            dvt_operator::plan::plan(&dv, &nodes).map_err(|e| e.to_string())
        });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The first line of a password file (without its line ending).
fn read_password(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn keys(command: KeysCommand) -> ExitCode {
    let result = match command {
        KeysCommand::Split {
            shares,
            threshold,
            secret_key_file,
            validators,
            kdf,
            insecure_fast_kdf,
            password_file,
            out,
        } => keys_split(
            shares,
            threshold,
            secret_key_file,
            validators,
            kdf,
            insecure_fast_kdf,
            password_file,
            &out,
        ),
        KeysCommand::Check { dir, password_file } => keys_check(&dir, password_file),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn keys_split(
    shares: u32,
    threshold: Option<u32>,
    secret_key_file: Option<PathBuf>,
    validators: u32,
    kdf: KdfChoice,
    insecure_fast_kdf: bool,
    password_file: Option<PathBuf>,
    out: &std::path::Path,
) -> Result<ExitCode, String> {
    use dvt_operator::eip2335::Kdf;
    let threshold = threshold.unwrap_or_else(|| dvt_operator::quorum::default_threshold(shares));
    let secrets = match &secret_key_file {
        Some(file) => dvt_operator::keys::read_secrets(file).map_err(|e| e.to_string())?,
        None => (0..validators)
            .map(|_| dvt_operator::bls::Secret::random())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
    };
    let kdf = match (kdf, insecure_fast_kdf) {
        (KdfChoice::Scrypt, false) => Kdf::SCRYPT_STANDARD,
        (KdfChoice::Pbkdf2, false) => Kdf::PBKDF2_STANDARD,
        (KdfChoice::Scrypt, true) => Kdf::Scrypt { log_n: 10 },
        (KdfChoice::Pbkdf2, true) => Kdf::Pbkdf2 { rounds: 1_024 },
    };
    let password = password_file.as_ref().map(read_password).transpose()?;
    let options = dvt_operator::keys::SplitOptions {
        shares: shares as usize,
        threshold: threshold as usize,
        secrets,
        kdf,
        password,
    };
    let lock = dvt_operator::keys::split(out, &options).map_err(|e| e.to_string())?;
    let count = lock["distributed_validators"]
        .as_array()
        .map_or(0, Vec::len);
    println!(
        "split {count} validator key(s) into {shares} shares, threshold {threshold}, in {}",
        out.display()
    );
    for validator in lock["distributed_validators"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  {}",
            validator["distributed_public_key"]
                .as_str()
                .unwrap_or_default()
        );
    }
    println!(
        "lock: {}; keystores: {}",
        out.join("cluster-lock.json").display(),
        dvt_operator::keys::node_dir(out, 0)
            .display()
            .to_string()
            .replace("node0", "node{i}")
    );
    Ok(ExitCode::SUCCESS)
}

fn keys_check(dir: &std::path::Path, password_file: Option<PathBuf>) -> Result<ExitCode, String> {
    let password = password_file.as_ref().map(read_password).transpose()?;
    let checks = dvt_operator::keys::check(dir, password.as_deref()).map_err(|e| e.to_string())?;
    let mut failed = false;
    for check in &checks {
        if check.problems.is_empty() {
            println!(
                "validator {}: ok ({} of {} threshold subsets sign for the group key)",
                check.validator, check.subsets_verified, check.subsets
            );
        } else {
            failed = true;
            println!(
                "validator {}: FAILED ({} of {} threshold subsets sign for the group key)",
                check.validator, check.subsets_verified, check.subsets
            );
            for problem in &check.problems {
                println!("  {problem}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn lock_verify(file: &PathBuf) -> ExitCode {
    let text = match read_input(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let summary = match dvt_operator::lock::summarize(&text) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let problems = dvt_operator::lock::verify(&summary);
    println!(
        "lock {}: {} operators, threshold {}, {} validator(s)",
        summary.lock_hash.as_deref().unwrap_or("(no lock_hash)"),
        summary.operators,
        summary.threshold,
        summary.validators
    );
    let general: Vec<&dvt_operator::lock::LockProblem> =
        problems.iter().filter(|p| p.validator.is_none()).collect();
    for problem in &general {
        println!("{problem}");
    }
    for (v, keys) in summary.public_keys.iter().enumerate() {
        let own: Vec<&dvt_operator::lock::LockProblem> =
            problems.iter().filter(|p| p.validator == Some(v)).collect();
        if !own.is_empty() {
            for problem in own {
                println!("{problem}");
            }
        } else if general.is_empty() {
            println!("validator {v} {}: ok", keys.distributed_public_key);
        } else {
            println!(
                "validator {v} {}: points valid; shares not interpolated (see above)",
                keys.distributed_public_key
            );
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_logging(format: LogFormat, filter: &str) {
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
    dvt_operator::controller::identify(&mut config);
    kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

fn run(args: &RunArgs) -> ExitCode {
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
        let scope = dvt_operator::controller::Settings {
            namespaces: args.namespaces.clone(),
            concurrency: args.concurrency,
            debounce: std::time::Duration::from_millis(args.debounce_ms),
            fence: dvt_operator::leader::Fence::default(),
        };
        tracing::info!(namespaces = ?scope.namespaces, leader_election = args.leader_election, "dvt-operator starting");
        let metrics = std::sync::Arc::new(dvt_operator::metrics::Metrics::default());
        let (stop_all, _) = tokio::sync::broadcast::channel::<()>(1);
        let stopped = {
            let mut receiver = stop_all.subscribe();
            async move {
                let _ = receiver.recv().await;
            }
        };
        let server = tokio::spawn(dvt_operator::metrics::serve(args.metrics_address, metrics.clone(), stopped));
        if args.leader_election {
            let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("dvt-operator-{}", std::process::id()));
            let lease = dvt_operator::leader::LeaseConfig::new(
                &args.lease_name,
                &args.lease_namespace,
                &identity,
                std::time::Duration::from_secs(args.lease_duration_seconds.max(2)),
            );
            // A standby is ready (it serves and waits); the leader's readiness is its caches'.
            metrics.set_ready(true);
            dvt_operator::controller::run_elected(client, scope, lease, metrics.clone(), stop_requested()).await;
        } else {
            metrics.set_leader(true);
            dvt_operator::controller::run_with_metrics(client, scope, metrics, stop_requested()).await;
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
