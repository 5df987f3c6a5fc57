//! dvt-sim: a simulated Kubernetes API server on 127.0.0.1 that kube-rs and kubectl talk to as
//! to a real one, for end-to-end tests on machines without Docker or a real cluster.

pub mod auth;
pub mod bench;
pub mod cluster;
pub mod errors;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod selectors;
mod server;
pub mod store;
pub mod table;
pub mod timeline;
pub mod tls;
pub mod validation;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cluster::faults::Fault;
pub use cluster::{Cluster, ClusterOptions, PassStats};
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
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot issue a token for ServiceAccount {namespace}/{name}: {source}")]
    Token {
        namespace: String,
        name: String,
        source: Box<errors::ApiError>,
    },
}

/// Settings of a simulated API server.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Events kept for watches to resume from; older resourceVersions answer `410 Gone`.
    pub history: usize,
    /// Bytes of past events kept at most (their serialized objects), beside the count.
    pub history_bytes: usize,
    /// Run a simulated cluster (nodes, controllers, kubelets, faults) inside; `None` serves the
    /// API alone.
    pub cluster: Option<ClusterOptions>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            port: 0,
            history: store::DEFAULT_HISTORY,
            history_bytes: store::DEFAULT_HISTORY_BYTES,
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
    tokens: Arc<auth::Tokens>,
    authorizer: Arc<auth::rbac::Authorizer>,
    certificates: Arc<tls::ServingCertificates>,
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
        let store = Arc::new(Store::bounded(options.history, options.history_bytes));
        let (cluster, cluster_task) = match options.cluster {
            Some(cluster_options) => {
                let (cluster, task) = Cluster::start(store.clone(), cluster_options);
                (Some(cluster), Some(task))
            }
            None => (None, None),
        };
        let api_faults = Arc::new(server::ApiFaultState::default());
        let requests = Arc::new(server::RequestCounts::default());
        let tokens = Arc::new(auth::Tokens::new());
        let authorizer = Arc::new(auth::rbac::Authorizer::default());
        let certificates = Arc::new(tls::ServingCertificates::generate()?);
        let (major, minor) = KUBERNETES_VERSION;
        let sim = Arc::new(server::Sim {
            store: store.clone(),
            cluster: cluster.clone(),
            api_faults: api_faults.clone(),
            requests: requests.clone(),
            tokens: tokens.clone(),
            authorizer: authorizer.clone(),
            version: json!({
                "major": major, "minor": minor, "gitVersion": format!("v{major}.{minor}.0-dvt-sim"),
                "gitCommit": "dvt-sim", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64",
            }),
        });
        let app = axum::Router::new().fallback(server::handle).with_state(sim);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let serving = certificates.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = tls::serve(listener, &serving, app) => {}
                _ = stopped => {}
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
            tokens,
            authorizer,
            certificates,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// The PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.certificates.ca_pem
    }

    /// The admin's bearer token (`system:masters`).
    pub fn admin_token(&self) -> &str {
        self.tokens.admin()
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
            tokens: self.tokens.clone(),
            authorizer: self.authorizer.clone(),
        };
        server::inject(&sim, fault)
    }

    /// API requests served so far, by (client, verb): the client is the user agent's product
    /// (`dvt-operator`, `kubectl`, ...), the verb Kubernetes' (`get`, `list`, `watch`, `patch`, ...).
    pub fn requests(&self) -> std::collections::BTreeMap<(String, &'static str), u64> {
        self.requests.snapshot()
    }

    /// Requests refused with 401 or 403 so far: (the client's whole user agent, message).
    pub fn refusals(&self) -> Vec<(String, String)> {
        self.requests.refusals()
    }

    /// Direct access to the store, for tests (e.g. to compact watch history).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A kubeconfig for the admin (`system:masters`): this server's address, its CA and the
    /// admin's token.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_with_token("dvt-sim", self.tokens.admin(), "default")
    }

    fn kubeconfig_with_token(&self, user: &str, token: &str, namespace: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.certificates.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dvt-sim\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: dvt-sim\n  context:\n    cluster: dvt-sim\n    user: {user}\n    namespace: {namespace}\ncurrent-context: dvt-sim\nusers:\n- name: {user}\n  user:\n    token: {token}\n",
            url = self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        write_file(path, &self.kubeconfig_yaml())
    }

    /// A token for a ServiceAccount that exists, as `kubectl create token` gets one.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, SimError> {
        let rt = self
            .store
            .resolve("", "v1", "serviceaccounts")
            .ok_or_else(|| SimError::Client("serviceaccounts are not served".to_owned()))?;
        let account = self
            .store
            .get(&rt, namespace, name)
            .map_err(|source| SimError::Token {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: Box::new(source),
            })?;
        let uid = account
            .pointer("/metadata/uid")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        Ok(self.tokens.issue(namespace, name, uid))
    }

    /// A kubeconfig that acts as a ServiceAccount (which must exist), in its namespace.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, SimError> {
        let token = self.service_account_token(namespace, name)?;
        Ok(self.kubeconfig_with_token(&format!("{namespace}-{name}"), &token, namespace))
    }

    pub fn write_service_account_kubeconfig(
        &self,
        path: &Path,
        namespace: &str,
        name: &str,
    ) -> Result<(), SimError> {
        write_file(path, &self.service_account_kubeconfig(namespace, name)?)
    }

    /// A kube-rs client for this server, as the admin.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.client_config()?).map_err(|e| SimError::Client(e.to_string()))
    }

    /// The configuration [`SimServer::client`] uses, for callers that tune it (kube-rs retries
    /// `429` answers, such as an eviction refused by a PodDisruptionBudget, for minutes by
    /// default; `default_retry = false` turns that off).
    pub fn client_config(&self) -> Result<kube::Config, SimError> {
        self.config_with_token(self.tokens.admin())
    }

    /// A client configuration acting as a ServiceAccount (which must exist).
    pub fn service_account_config(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Config, SimError> {
        let token = self.service_account_token(namespace, name)?;
        let mut config = self.config_with_token(&token)?;
        config.default_namespace = namespace.to_owned();
        Ok(config)
    }

    fn config_with_token(&self, token: &str) -> Result<kube::Config, SimError> {
        let url: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| SimError::Client(e.to_string()))?;
        let mut config = kube::Config::new(url);
        config.root_cert = Some(vec![self.certificates.ca_der.clone()]);
        config.auth_info.token = Some(secrecy::SecretString::from(token.to_owned()));
        Ok(config)
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

fn write_file(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|source| SimError::WriteKubeconfig {
        path: path.display().to_string(),
        source,
    })
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
