//! HTTP routing of the Kubernetes API onto the store: discovery, OpenAPI, CRUD, patch, watch.

mod access;
mod discovery;
mod objects;
mod request;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::auth::rbac::{self, Decision, Request};
use crate::auth::{self, Identity, Tokens};
use crate::cluster::Cluster;
use crate::cluster::faults::{ApiFaults, Fault};
use crate::errors::ApiError;
use crate::registry::ResourceType;
use crate::selectors::Selector;
use crate::store::{DeleteOptions, PatchKind, Store, Subresource, WatchEvent, WriteOptions};
use crate::table;
use access::*;
use discovery::*;
use objects::*;
use request::*;
use watch::*;

pub struct Sim {
    pub store: Arc<Store>,
    pub version: Value,
    pub cluster: Option<Cluster>,
    pub api_faults: Arc<ApiFaultState>,
    pub requests: Arc<RequestCounts>,
    pub tokens: Arc<Tokens>,
    pub authorizer: Arc<rbac::Authorizer>,
}

/// API requests served, by client (the user agent's product, e.g. `dvt-operator`, `kubectl`)
/// and Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
/// `deletecollection`; `discovery` for everything that is not a resource).
#[derive(Default)]
pub struct RequestCounts {
    counts: std::sync::Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Requests refused by authentication or authorization (401/403): (client, message), the
    /// first thousand.
    refusals: std::sync::Mutex<Vec<(String, String)>>,
}

impl RequestCounts {
    fn record(&self, client: String, verb: &'static str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((client, verb)).or_default() += 1;
    }

    fn refused(&self, client: String, message: &str) {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if refusals.len() < 1000 {
            refusals.push((client, message.to_owned()));
        }
    }

    /// Requests refused by authentication or authorization: (client, message).
    pub fn refusals(&self) -> Vec<(String, String)> {
        self.refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A snapshot: (client, verb) → requests.
    pub fn snapshot(&self) -> BTreeMap<(String, &'static str), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// API faults in force, with the random source that picks the requests they hit.
#[derive(Default)]
pub struct ApiFaultState {
    pub faults: std::sync::Mutex<ApiFaults>,
    random: std::sync::atomic::AtomicU64,
}

impl ApiFaultState {
    fn current(&self) -> ApiFaults {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A number in [0, 1) (SplitMix64 over a shared counter: cheap and good enough to pick a
    /// fraction of requests).
    fn roll(&self) -> f64 {
        let mut z = self
            .random
            .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    // Straight into bytes: `to_string` goes through `fmt::Write` for every token, which was
    // most of a response's serialization in a profile of the API workers.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_default()
}

fn error_response(error: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    )
}

pub async fn handle(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_owned();
    sim.requests.record(client, verb_of(&method, &uri));
    match route(&sim, &method, &uri, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn route(
    sim: &Sim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let store = &sim.store;
    // Refusals by authentication or RBAC are kept for tests (an admission plugin's 403, such as
    // a refused resize, is not one).
    let identity = admit(sim, method, uri, headers)
        .inspect_err(|error| sim.requests.refused(user_agent(headers), &error.message))?;
    match parse_target(uri.path()) {
        Target::Version => Ok(json_response(StatusCode::OK, &sim.version)),
        Target::Health => Ok(Response::new(Body::from("ok"))),
        Target::CoreVersions => Ok(json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        )),
        Target::Groups => {
            let groups: Vec<Value> = store
                .registry()
                .group_versions()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, versions)| group_json(&g, &versions))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ))
        }
        Target::Group(group) => match store.registry().group_versions().get(&group) {
            Some(versions) => {
                let mut body = group_json(&group, versions);
                body["kind"] = json!("APIGroup");
                body["apiVersion"] = json!("v1");
                Ok(json_response(StatusCode::OK, &body))
            }
            None => Err(ApiError::not_found("groups", &group)),
        },
        Target::Resources { group, version } => {
            let registry = store.registry();
            let types = registry.in_group_version(&group, &version);
            if types.is_empty() {
                return Err(ApiError::not_found(
                    "groupversions",
                    &format!("{group}/{version}"),
                ));
            }
            let resources: Vec<Value> =
                types.iter().flat_map(|rt| rt.discovery_entries()).collect();
            let group_version = if group.is_empty() {
                version
            } else {
                format!("{group}/{version}")
            };
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
            ))
        }
        Target::OpenApiV3Index => {
            let paths: serde_json::Map<String, Value> = store
                .registry()
                .group_versions()
                .into_iter()
                .flat_map(|(g, versions)| {
                    versions.into_iter().map(move |v| {
                        let path = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
                        (path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", store.current_resource_version())}))
                    })
                })
                .collect();
            Ok(json_response(StatusCode::OK, &json!({"paths": paths})))
        }
        Target::OpenApiV3 { group, version } => Ok(json_response(
            StatusCode::OK,
            &openapi_v3(store, &group, &version),
        )),
        Target::NotFound => Err(ApiError::not_found("paths", uri.path())),
        Target::SimFaults if method == Method::POST => {
            let fault: Fault = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("not a fault: {e}")))?;
            inject(sim, fault)?;
            Ok(json_response(StatusCode::OK, &json!({"status": "Success"})))
        }
        Target::SimFaults => {
            let cluster = sim.cluster.as_ref().map(Cluster::faults);
            Ok(json_response(
                StatusCode::OK,
                &json!({"api": sim.api_faults.current(), "cluster": cluster}),
            ))
        }
        Target::SimTimeline => Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(store.timeline()).unwrap_or_default(),
        )),
        Target::Object(path) => {
            let faults = sim.api_faults.current();
            if faults.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
            }
            let client = user_agent(headers);
            for slow in &faults.slow_clients {
                if client.contains(&slow.user_agent_contains) && path.plural == slow.resource {
                    tokio::time::sleep(Duration::from_millis(slow.latency_ms)).await;
                }
            }
            if verb_of(method, uri) == "get" && faults.failing_gets.contains(&path.plural) {
                return Err(ApiError::internal("dvt-sim: injected failure of this GET"));
            }
            if faults.error_fraction > 0.0 && sim.api_faults.roll() < faults.error_fraction {
                return Err(ApiError::internal("dvt-sim: injected API fault"));
            }
            let rt = store
                .resolve(&path.group, &path.version, &path.plural)
                .ok_or_else(|| {
                    ApiError::not_found(
                        "resources",
                        &format!("{}/{}/{}", path.group, path.version, path.plural),
                    )
                })?;
            object_request(sim, &identity, &rt, path, method, uri, headers, body).await
        }
    }
}

/// Applies a fault: API faults here, the rest in the simulated cluster.
pub fn inject(sim: &Sim, fault: Fault) -> Result<(), ApiError> {
    match (fault, &sim.cluster) {
        (Fault::Api(api), _) => {
            *sim.api_faults
                .faults
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = api;
            Ok(())
        }
        (fault, Some(cluster)) => {
            cluster.inject(fault);
            Ok(())
        }
        (_, None) => Err(ApiError::bad_request(
            "this simulator runs no cluster (start it with nodes) and cannot take that fault",
        )),
    }
}
