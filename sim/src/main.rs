//! `dvt-sim`: serve the simulated Kubernetes API until interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dvt_sim::{SimOptions, SimServer};

/// A simulated Kubernetes API server for testing dvt-operator without Docker or a real cluster.
///
/// It serves the Kubernetes API over plain HTTP on 127.0.0.1 and writes a kubeconfig, so kubectl
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
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let Command::Serve { kubeconfig, port } = Cli::parse().command;
    let server = match SimServer::start(SimOptions {
        port,
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
        "try: KUBECONFIG={} kubectl get namespaces",
        kubeconfig.display()
    );
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
    ExitCode::SUCCESS
}
