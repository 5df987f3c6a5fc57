//! The `dvt-operator` command: parses the flags and hands each command to the library (`cli`
//! for the offline commands, `runtime::process` for `run`, `demo` for the demo).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dvt_operator::cli;
use dvt_operator::crypto::eip2335::Kdf;
use dvt_operator::runtime::process::{self, RunArgs};

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
    /// Print a Job that exports a stopped member's slashing-protection history (EIP-3076
    /// interchange) from its volume, for moving the member by hand.
    ///
    /// Example: `dvt-operator export-slashing-protection -f dv.yaml --member alpha | kubectl apply -f -`,
    /// then `kubectl logs job/<dv>-alpha-export-slashing-protection`.
    ExportSlashingProtection {
        /// File with the DistributedValidator.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// The member whose history to export.
        #[arg(long)]
        member: String,
        /// The client whose data is on the volume (default: the member's pinned client).
        #[arg(long, value_parser = parse_client)]
        client: Option<dvt_operator::api::ValidatorClient>,
        /// The client's image (default: the DV's, else the pinned one).
        #[arg(long)]
        image: Option<String>,
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

/// A validator client by its name (`lighthouse`, `teku`, `prysm`, `nimbus`, `lodestar`).
fn parse_client(name: &str) -> Result<dvt_operator::api::ValidatorClient, String> {
    dvt_operator::api::ValidatorClient::ALL
        .into_iter()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| {
            format!("not a validator client: {name} (lighthouse, teku, prysm, nimbus, lodestar)")
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => cli::crd::command(),
        Command::Validate { files } => cli::validate::command(&files),
        Command::Plan { file, nodes } => cli::plan::command(&file, &nodes),
        Command::Lock(LockCommand::Verify { file }) => cli::lock::verify_command(&file),
        Command::ExportSlashingProtection {
            file,
            member,
            client,
            image,
        } => cli::slashing_protection::command(&file, &member, client, image.as_deref()),
        Command::Keys(command) => keys(command),
        Command::Run(args) => process::run(&args),
        #[cfg(feature = "demo")]
        Command::Demo { serve, fast } => demo(serve, fast),
    }
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
        } => {
            let kdf = match (kdf, insecure_fast_kdf) {
                (KdfChoice::Scrypt, false) => Kdf::SCRYPT_STANDARD,
                (KdfChoice::Pbkdf2, false) => Kdf::PBKDF2_STANDARD,
                (KdfChoice::Scrypt, true) => Kdf::Scrypt { log_n: 10 },
                (KdfChoice::Pbkdf2, true) => Kdf::Pbkdf2 { rounds: 1_024 },
            };
            cli::keys::split_command(
                shares,
                threshold,
                secret_key_file,
                validators,
                kdf,
                password_file,
                &out,
            )
        }
        KeysCommand::Check { dir, password_file } => cli::keys::check_command(&dir, password_file),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "demo")]
fn demo(serve: Option<PathBuf>, fast: bool) -> ExitCode {
    // The operator's own logs would drown the story; warnings still show.
    process::init_logging(process::LogFormat::Text, "warn");
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
