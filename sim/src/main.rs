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

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (kubeconfig, port) = match Cli::parse().command {
        Command::Serve { kubeconfig, port } => (kubeconfig, port),
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
