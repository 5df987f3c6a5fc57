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
use crate::controller::{self, Scope, names};
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

/// The simulated cluster with the CRD installed and the operator running on it.
pub struct World {
    pub sim: SimServer,
    /// A client of a user (not the operator's).
    pub client: Client,
    operator: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// How the world is shaped.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    pub nodes: usize,
    pub zones: usize,
    /// Test pace (tens of milliseconds) instead of a pace a person can follow.
    pub fast: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            nodes: 8,
            zones: 4,
            fast: true,
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
        let pace = if options.fast {
            ClusterOptions::fast()
        } else {
            ClusterOptions::default()
        };
        let sim = SimServer::start(SimOptions {
            cluster: Some(ClusterOptions {
                nodes: options.nodes,
                zones: options.zones,
                readiness_rules: vec![charon_readiness()],
                ..pace
            }),
            ..SimOptions::default()
        })
        .await?;
        let mut config = sim.client_config()?;
        config.default_retry = false;
        let client = Client::try_from(config).map_err(api_error("building a client"))?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = DistributedValidator::crd();
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("dvt-demo").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(api_error("installing the DistributedValidator CRD"))?;
        let mut world = World {
            sim,
            client,
            operator: None,
        };
        world.start_operator()?;
        Ok(world)
    }

    /// Starts the operator (again), with its own client, as `dvt-operator run` would.
    pub fn start_operator(&mut self) -> Result<(), DemoError> {
        if self.operator.is_some() {
            return Ok(());
        }
        let mut config = self.sim.client_config()?;
        controller::identify(&mut config);
        let client =
            Client::try_from(config).map_err(api_error("building the operator's client"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(client, Scope::default(), async move {
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

    /// Writes the kubeconfig so a person can use kubectl against the world.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), DemoError> {
        Ok(self.sim.write_kubeconfig(path)?)
    }
}
