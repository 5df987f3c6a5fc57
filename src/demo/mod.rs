//! The operator on the embedded simulated cluster: what `dvt-operator demo` shows a person, and
//! the world the end-to-end tests run in. Built with the default `demo` feature.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::DistributedValidator;
use crate::controller::{self, Settings, names};
use dvt_sim::cluster::ReadinessRule;
use dvt_sim::{ClusterOptions, SimOptions, SimServer};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting the simulated cluster: {0}")]
    Sim(#[from] dvt_sim::SimError),
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {path}: {message}")]
    Manifest { path: String, message: String },
}

/// The simulated cluster with the CRD installed and the operator running on it, as its
/// ServiceAccount with the install bundle's RBAC.
pub struct World {
    pub sim: SimServer,
    /// A client of a user (the cluster's admin, not the operator).
    pub client: Client,
    operator: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    watch_namespaces: Vec<String>,
    peer_timing: Option<(std::time::Duration, std::time::Duration)>,
}

/// The rendered install bundle (`manifests/install.yaml`, the chart with default values): every
/// world applies its namespace, ServiceAccount, ClusterRoles, Roles and bindings, and runs the
/// operator with that ServiceAccount's token, so that a request the chart does not allow fails
/// here as it would on a real cluster.
pub const INSTALL_BUNDLE: &str = include_str!("../../manifests/install.yaml");
/// Where the bundle installs the operator, and the ServiceAccount it runs as.
pub const OPERATOR_NAMESPACE: &str = "dvt-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "dvt-operator";

/// The kinds of the bundle a world applies: everything but the operator's own Deployment and
/// Service (the operator runs in-process or as a local process instead) and the CRD (applied
/// from the code, which a test keeps equal to the bundle's).
const BUNDLE_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// How the world is shaped.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    pub nodes: usize,
    pub zones: usize,
    /// Test pace (tens of milliseconds) instead of a pace a person can follow.
    pub fast: bool,
    /// The simulated cluster's pace, overriding the one `fast` picks (the demo's own).
    pub pace: Option<ClusterOptions>,
    /// Start an operator in-process (tests of separate operator processes turn this off).
    pub operator: bool,
    /// The install bundle whose RBAC the operator runs under; `None` is [`INSTALL_BUNDLE`].
    /// (A test renders the chart with `watchNamespaces` for the namespaced scope.)
    pub install_bundle: Option<String>,
    /// The namespaces the operator watches (`--namespace`); empty is all.
    pub watch_namespaces: Vec<String>,
    /// Member pods are ready only while `threshold` members of their DV run in this cluster
    /// ([`charon_readiness`]). Off for a cluster that runs only some members of its DVs (the
    /// others are another organisation's).
    pub quorum_readiness: bool,
    /// How often the operator reads its members' Charon, and how recently a member must have
    /// answered to count as up; `None` keeps the operator's defaults.
    pub peer_timing: Option<(std::time::Duration, std::time::Duration)>,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            nodes: 8,
            zones: 4,
            fast: true,
            pace: None,
            operator: true,
            install_bundle: None,
            watch_namespaces: Vec::new(),
            quorum_readiness: true,
            peer_timing: None,
        }
    }
}

/// Charon is ready only while `threshold` members of its DV run: the simulated kubelet applies
/// the same rule to member pods.
pub fn charon_readiness() -> ReadinessRule {
    ReadinessRule {
        group_label: names::LABEL_DV.to_owned(),
        min_running: 1,
        min_running_annotation: Some(names::ANNOTATION_THRESHOLD.to_owned()),
    }
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> DemoError {
    let action = action.into();
    move |source| DemoError::Api { action, source }
}

impl World {
    pub async fn start(options: WorldOptions) -> Result<World, DemoError> {
        let pace = match (&options.pace, options.fast) {
            (Some(pace), _) => pace.clone(),
            (None, true) => ClusterOptions::fast(),
            (None, false) => ClusterOptions::default(),
        };
        let sim = SimServer::start(SimOptions {
            cluster: Some(ClusterOptions {
                nodes: options.nodes,
                zones: options.zones,
                readiness_rules: if options.quorum_readiness {
                    vec![charon_readiness()]
                } else {
                    Vec::new()
                },
                ..pace
            }),
            ..SimOptions::default()
        })
        .await?;
        let client =
            Client::try_from(user_config(&sim)?).map_err(api_error("building a client"))?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = DistributedValidator::crd();
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("dvt-demo").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(api_error("installing the DistributedValidator CRD"))?;
        apply_bundle(
            &client,
            options.install_bundle.as_deref().unwrap_or(INSTALL_BUNDLE),
        )
        .await?;
        let mut world = World {
            sim,
            client,
            operator: None,
            watch_namespaces: options.watch_namespaces.clone(),
            peer_timing: options.peer_timing,
        };
        if options.operator {
            world.start_operator()?;
        }
        Ok(world)
    }

    /// Starts the operator (again), with its own client, as `dvt-operator run` would: as the
    /// bundle's ServiceAccount.
    pub fn start_operator(&mut self) -> Result<(), DemoError> {
        if self.operator.is_some() {
            return Ok(());
        }
        let mut config = self
            .sim
            .service_account_config(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)?;
        controller::identify(&mut config);
        let client =
            Client::try_from(config).map_err(api_error("building the operator's client"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let defaults = Settings::default();
        let (peer_read_every, peer_seen_within) = self
            .peer_timing
            .unwrap_or((defaults.peer_read_every, defaults.peer_seen_within));
        let settings = Settings {
            namespaces: self.watch_namespaces.clone(),
            peer_read_every,
            peer_seen_within,
            ..defaults
        };
        let task = tokio::spawn(controller::run(client, settings, async move {
            let _ = stopped.await;
        }));
        self.operator = Some((stop, task));
        Ok(())
    }

    /// Stops the operator and waits for it to finish.
    pub async fn stop_operator(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Applies every ConfigMap, Secret and DistributedValidator of a YAML file, as
    /// `kubectl apply -f` would; returns what it applied as `kind/name`.
    pub async fn apply_file(&self, path: &Path, namespace: &str) -> Result<Vec<String>, DemoError> {
        let text = std::fs::read_to_string(path).map_err(|e| DemoError::Manifest {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let params = PatchParams::apply("dvt-demo").force();
        let mut applied = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(document).map_err(|e| DemoError::Manifest {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let json = serde_json::to_value(&value).map_err(|e| DemoError::Manifest {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let action = format!("applying {kind} {name}");
            match kind.as_str() {
                "ConfigMap" => {
                    Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                        .patch(&name, &params, &Patch::Apply(&json))
                        .await
                        .map_err(api_error(action))?;
                }
                "Secret" => {
                    Api::<Secret>::namespaced(self.client.clone(), namespace)
                        .patch(&name, &params, &Patch::Apply(&json))
                        .await
                        .map_err(api_error(action))?;
                }
                "DistributedValidator" => {
                    Api::<DistributedValidator>::namespaced(self.client.clone(), namespace)
                        .patch(&name, &params, &Patch::Apply(&json))
                        .await
                        .map_err(api_error(action))?;
                }
                _ => continue,
            }
            applied.push(format!("{kind}/{name}"));
        }
        Ok(applied)
    }

    /// The configuration of [`World::client`], for a client of its own (e.g. on another
    /// runtime).
    pub fn user_config(&self) -> Result<kube::Config, DemoError> {
        Ok(user_config(&self.sim)?)
    }

    /// Writes the kubeconfig so a person can use kubectl against the world (as its admin).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), DemoError> {
        Ok(self.sim.write_kubeconfig(path)?)
    }

    /// Writes a kubeconfig for operator processes: the bundle's ServiceAccount, with a fresh
    /// token.
    pub fn write_operator_kubeconfig(&self, path: &Path) -> Result<(), DemoError> {
        Ok(self.sim.write_service_account_kubeconfig(
            path,
            OPERATOR_NAMESPACE,
            OPERATOR_SERVICE_ACCOUNT,
        )?)
    }
}

/// The cluster admin's client configuration, without kube-rs' retries: a refused request (a
/// `429` from a budget, say) must show, not be retried for minutes.
fn user_config(sim: &SimServer) -> Result<kube::Config, dvt_sim::SimError> {
    let mut config = sim.client_config()?;
    config.default_retry = false;
    Ok(config)
}

/// Applies the bundle's namespace, ServiceAccount and RBAC objects (server-side apply, as
/// `kubectl apply --server-side` would).
async fn apply_bundle(client: &Client, bundle: &str) -> Result<(), DemoError> {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let params = PatchParams::apply("dvt-demo").force();
    for document in serde_yaml::Deserializer::from_str(bundle) {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| DemoError::Manifest {
            path: "the install bundle".to_owned(),
            message: e.to_string(),
        })?;
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        if !BUNDLE_KINDS.contains(&kind.as_str()) {
            continue;
        }
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(OPERATOR_NAMESPACE)
            .to_owned();
        let json = serde_json::to_value(&value).map_err(|e| DemoError::Manifest {
            path: "the install bundle".to_owned(),
            message: e.to_string(),
        })?;
        let patch = Patch::Apply(&json);
        let action = format!("applying {kind} {name} of the install bundle");
        let result = match kind.as_str() {
            "Namespace" => Api::<Namespace>::all(client.clone())
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            "ServiceAccount" => Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            "Role" => Api::<Role>::namespaced(client.clone(), &namespace)
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            _ => Api::<RoleBinding>::namespaced(client.clone(), &namespace)
                .patch(&name, &params, &patch)
                .await
                .map(drop),
        };
        result.map_err(api_error(action))?;
    }
    Ok(())
}

/// The 4-member example, embedded so that the demo runs from any directory.
pub const EXAMPLE_STADER_4: &str = include_str!("../../examples/stader-4.yaml");
pub const EXAMPLE_STADER_7: &str = include_str!("../../examples/stader-7.yaml");

mod story;
pub use story::{DemoOptions, DemoSummary, lowest_ready_since, run_demo, simulate_history_moves};
