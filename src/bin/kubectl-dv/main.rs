//! `kubectl dv`: the operator's view of a DistributedValidator on one screen, and restarts or
//! pauses asked of the operator (never performed by the plugin itself). kubectl finds this
//! binary on PATH as `kubectl-dv`; it reads kubeconfig as kubectl does (`--kubeconfig`,
//! `$KUBECONFIG`, `~/.kube/config`; `--context`; `-n`, else the context's namespace).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dvt_operator::api::DistributedValidator;
use dvt_operator::plugin;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Parser)]
#[command(
    name = "kubectl-dv",
    version,
    about = "DistributedValidators as the operator sees them"
)]
struct Cli {
    /// Kubeconfig file (else $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (else the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (else the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One screen: phase, ready against threshold, the budget, every member, the rollout, the
    /// placement and diversity verdicts, key shares and the latest Events.
    Status {
        name: String,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Ask the operator to restart one member; it does so when the quorum budget allows.
    Restart { name: String, member: String },
    /// Rollouts: `rollout restart NAME` asks for every member to restart, one at a time.
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// Stop every restart and rollout of a DV (the annotation dvt.io/paused).
    Pause { name: String },
    /// Undo `pause`.
    Resume { name: String },
}

#[derive(Subcommand)]
enum RolloutAction {
    Restart { name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
enum PluginError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("loading kubeconfig: {0}")]
    Infer(#[from] kube::config::KubeconfigError),
    #[error("connecting: {0}")]
    Client(#[source] kube::Error),
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("distributedvalidator {name:?} has no member {member:?} (members: {members})")]
    NoSuchMember {
        name: String,
        member: String,
        members: String,
    },
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

async fn client(cli: &Cli) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| PluginError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            Config::from_custom_kubeconfig(file, &options).await?
        }
        None => Config::from_kubeconfig(&options).await?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(PluginError::Client)?;
    Ok((client, namespace))
}

fn api_error(action: String) -> impl FnOnce(kube::Error) -> PluginError {
    move |source| PluginError::Api { action, source }
}

async fn get(
    dvs: &Api<DistributedValidator>,
    name: &str,
) -> Result<DistributedValidator, PluginError> {
    dvs.get(name)
        .await
        .map_err(api_error(format!("getting distributedvalidator {name}")))
}

async fn status(
    client: Client,
    namespace: &str,
    name: &str,
    output: Output,
) -> Result<(), PluginError> {
    let dvs: Api<DistributedValidator> = Api::namespaced(client.clone(), namespace);
    let dv = get(&dvs, name).await?;
    let events: Api<Event> = Api::namespaced(client, namespace);
    let selector = format!("regarding.kind=DistributedValidator,regarding.name={name}");
    let listed = events
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(api_error(format!("listing the Events of {name}")))?;
    let view = plugin::view(&dv, &listed.items, Timestamp::now());
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Output::Text => print!(
            "{}",
            plugin::render(
                &view,
                plugin::Palette {
                    colour: std::io::stdout().is_terminal()
                }
            )
        ),
    }
    Ok(())
}

async fn restart(
    client: Client,
    namespace: &str,
    name: &str,
    member: Option<&str>,
) -> Result<(), PluginError> {
    let dvs: Api<DistributedValidator> = Api::namespaced(client, namespace);
    let dv = get(&dvs, name).await?;
    if let Some(member) = member
        && !dv.spec.members.iter().any(|m| m.name == member)
    {
        return Err(PluginError::NoSuchMember {
            name: name.to_owned(),
            member: member.to_owned(),
            members: dv
                .spec
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let now = Timestamp::now();
    dvs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(plugin::restart_patch(member, now)),
    )
    .await
    .map_err(api_error(format!("annotating distributedvalidator {name}")))?;
    let what = member.map_or_else(
        || "a restart of every member, one at a time,".to_owned(),
        |m| format!("a restart of member {m}"),
    );
    println!(
        "Asked the operator for {what} at {}.",
        now.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    let status = dv.status.unwrap_or_default();
    match status.disruption_budget {
        Some(budget) if budget > 0 => println!(
            "The quorum budget is {budget}: the operator restarts as soon as the previous restarts have settled."
        ),
        Some(budget) => println!(
            "The quorum budget is {budget} ({} ready, {} needed to sign): the restart waits until a member is back.",
            status.ready_members,
            status.threshold.unwrap_or_default()
        ),
        None => println!("The DV has no status yet: the restart waits for the operator."),
    }
    println!("Follow it with: kubectl dv status {name} -n {namespace}");
    Ok(())
}

async fn pause(
    client: Client,
    namespace: &str,
    name: &str,
    paused: bool,
) -> Result<(), PluginError> {
    let dvs: Api<DistributedValidator> = Api::namespaced(client, namespace);
    get(&dvs, name).await?;
    dvs.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(plugin::pause_patch(paused)),
    )
    .await
    .map_err(api_error(format!("annotating distributedvalidator {name}")))?;
    if paused {
        println!(
            "Paused {name}: the operator makes no restarts or rollouts until `kubectl dv resume {name}`."
        );
    } else {
        println!("Resumed {name}: restarts and rollouts proceed within the quorum budget.");
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let (client, namespace) = client(&cli).await?;
    match &cli.command {
        Command::Status { name, output } => status(client, &namespace, name, *output).await,
        Command::Restart { name, member } => restart(client, &namespace, name, Some(member)).await,
        Command::Rollout {
            action: RolloutAction::Restart { name },
        } => restart(client, &namespace, name, None).await,
        Command::Pause { name } => pause(client, &namespace, name, true).await,
        Command::Resume { name } => pause(client, &namespace, name, false).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
