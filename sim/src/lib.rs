//! dvt-sim: a simulated Kubernetes API server on 127.0.0.1 that kube-rs and kubectl talk to as
//! to a real one, for end-to-end tests on machines without Docker or a real cluster.

pub mod bench;
pub mod cluster;
pub mod errors;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selectors;
mod server;
pub mod store;
pub mod table;
pub mod timeline;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cluster::faults::Fault;
pub use cluster::{Cluster, ClusterOptions};
pub use store::Store;

/// Why the simulator could not start or be used.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot write the kubeconfig to {path}: {source}")]
    WriteKubeconfig {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot build a client for the simulator: {0}")]
    Client(String),
}

/// Settings of a simulated API server.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Events kept for watches to resume from; older resourceVersions answer `410 Gone`.
    pub history: usize,
    /// Run a simulated cluster (nodes, controllers, kubelets, faults) inside; `None` serves the
    /// API alone.
    pub cluster: Option<ClusterOptions>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            port: 0,
            history: store::DEFAULT_HISTORY,
            cluster: None,
        }
    }
}

/// A running simulated API server. Dropping it stops the server.
pub struct SimServer {
    address: SocketAddr,
    store: Arc<Store>,
    cluster: Option<Cluster>,
    cluster_task: Option<JoinHandle<()>>,
    api_faults: Arc<server::ApiFaultState>,
    requests: Arc<server::RequestCounts>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The Kubernetes version the simulator reports.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

impl SimServer {
    /// Starts serving on 127.0.0.1.
    pub async fn start(options: SimOptions) -> Result<SimServer, SimError> {
        let address = format!("127.0.0.1:{}", options.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| SimError::Bind {
                address: address.clone(),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| SimError::Bind { address, source })?;
        let store = Arc::new(Store::new(options.history));
        let (cluster, cluster_task) = match options.cluster {
            Some(cluster_options) => {
                let (cluster, task) = Cluster::start(store.clone(), cluster_options);
                (Some(cluster), Some(task))
            }
            None => (None, None),
        };
        let api_faults = Arc::new(server::ApiFaultState::default());
        let requests = Arc::new(server::RequestCounts::default());
        let (major, minor) = KUBERNETES_VERSION;
        let sim = Arc::new(server::Sim {
            store: store.clone(),
            cluster: cluster.clone(),
            api_faults: api_faults.clone(),
            requests: requests.clone(),
            version: json!({
                "major": major, "minor": minor, "gitVersion": format!("v{major}.{minor}.0-dvt-sim"),
                "gitCommit": "dvt-sim", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64",
            }),
        });
        let app = axum::Router::new().fallback(server::handle).with_state(sim);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "simulated API server stopped with an error");
            }
        });
        tracing::info!(%address, "simulated API server listening");
        Ok(SimServer {
            address,
            store,
            cluster,
            cluster_task,
            api_faults,
            requests,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The simulated cluster, when one runs.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Injects a fault, as `POST /sim/v1/faults` does.
    pub fn inject(&self, fault: Fault) -> Result<(), errors::ApiError> {
        let sim = server::Sim {
            store: self.store.clone(),
            version: serde_json::Value::Null,
            cluster: self.cluster.clone(),
            api_faults: self.api_faults.clone(),
            requests: self.requests.clone(),
        };
        server::inject(&sim, fault)
    }

    /// API requests served so far, by (client, verb): the client is the user agent's product
    /// (`dvt-operator`, `kubectl`, ...), the verb Kubernetes' (`get`, `list`, `watch`, `patch`, ...).
    pub fn requests(&self) -> std::collections::BTreeMap<(String, &'static str), u64> {
        self.requests.snapshot()
    }

    /// Direct access to the store, for tests (e.g. to compact watch history).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dvt-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: dvt-sim\n  context:\n    cluster: dvt-sim\n    user: dvt-sim\n    namespace: default\ncurrent-context: dvt-sim\nusers:\n- name: dvt-sim\n  user: {{}}\n",
            url = self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| SimError::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// A kube-rs client for this server.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.client_config()?).map_err(|e| SimError::Client(e.to_string()))
    }

    /// The configuration [`SimServer::client`] uses, for callers that tune it (kube-rs retries
    /// `429` answers, such as an eviction refused by a PodDisruptionBudget, for minutes by
    /// default; `default_retry = false` turns that off).
    pub fn client_config(&self) -> Result<kube::Config, SimError> {
        let url: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| SimError::Client(e.to_string()))?;
        Ok(kube::Config::new(url))
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(task) = self.cluster_task.take() {
            task.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(task) = self.cluster_task.take() {
            task.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
