//! HTTP routing of the Kubernetes API onto the store: discovery, OpenAPI, CRUD, patch, watch.

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

/// How often an idle watch sends a bookmark when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

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

/// The Kubernetes verb of a request, as kube-apiserver's audit log names it.
fn verb_of(method: &Method, uri: &Uri) -> &'static str {
    let Target::Object(path) = parse_target(uri.path()) else {
        return "discovery";
    };
    let query = uri.query().unwrap_or_default();
    let collection = path.name.is_none();
    match *method {
        Method::GET
            if query
                .split('&')
                .any(|p| p == "watch=true" || p == "watch=1") =>
        {
            "watch"
        }
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
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
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn error_response(error: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    )
}

/// A parsed request target.
enum Target {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources {
        group: String,
        version: String,
    },
    OpenApiV3Index,
    OpenApiV3 {
        group: String,
        version: String,
    },
    /// `/sim/v1/faults`: inject (POST) or list (GET) faults.
    SimFaults,
    /// `/sim/v1/timeline`: what happened so far.
    SimTimeline,
    Object(ObjectPath),
    NotFound,
}

struct ObjectPath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(path: &str) -> Target {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Target::Version,
        ["sim", "v1", "faults"] => return Target::SimFaults,
        ["sim", "v1", "timeline"] => return Target::SimTimeline,
        ["healthz" | "livez" | "readyz", ..] => return Target::Health,
        ["api"] => return Target::CoreVersions,
        ["apis"] => return Target::Groups,
        ["apis", group] => return Target::Group((*group).to_owned()),
        ["openapi", "v3"] => return Target::OpenApiV3Index,
        ["openapi", "v3", "api", version] => {
            return Target::OpenApiV3 {
                group: String::new(),
                version: (*version).to_owned(),
            };
        }
        ["openapi", "v3", "apis", group, version] => {
            return Target::OpenApiV3 {
                group: (*group).to_owned(),
                version: (*version).to_owned(),
            };
        }
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return Target::NotFound,
    };
    let object = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Target::Object(ObjectPath {
            group: group.clone(),
            version: version.clone(),
            plural: plural.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            sub: sub.map(str::to_owned),
        })
    };
    match rest {
        [] => Target::Resources { group, version },
        // The Namespace object itself and its subresources.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            object("namespaces", None, Some(name), Some(sub))
        }
        ["namespaces", ns, plural, tail @ ..] => match tail {
            [] => object(plural, Some(ns), None, None),
            [name] => object(plural, Some(ns), Some(name), None),
            [name, sub] => object(plural, Some(ns), Some(name), Some(sub)),
            _ => Target::NotFound,
        },
        [plural] => object(plural, None, None, None),
        [plural, name] => object(plural, None, Some(name), None),
        [plural, name, sub] => object(plural, None, Some(name), Some(sub)),
        _ => Target::NotFound,
    }
}

fn query_params(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|pairs| pairs.into_iter().collect())
        .unwrap_or_default()
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else if content_type.contains("protobuf") {
        crate::protobuf::decode(body)
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }
}

/// Kubernetes derives a default field manager from the user agent (`kubectl/v1.32 ...` → `kubectl`).
fn field_manager(params: &BTreeMap<String, String>, headers: &HeaderMap) -> String {
    params.get("fieldManager").cloned().unwrap_or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_owned()
    })
}

/// The client's whole user agent ("" without one).
fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`: the client
/// wants metadata only (kube-rs' metadata watchers; the operator's view of Secrets).
fn wants_metadata(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"))
}

fn metadata_only(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
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

/// What RBAC sees of a request: its verb and what it touches (kube-apiserver's `RequestInfo`:
/// for the `namespaces` resource, the namespace is the object's own name).
fn request_attributes(method: &Method, uri: &Uri) -> (String, Request) {
    match parse_target(uri.path()) {
        Target::Object(path) => {
            let namespace = match (&path.namespace, path.plural.as_str(), &path.name) {
                (None, "namespaces", Some(name)) => Some(name.as_str()),
                (namespace, _, _) => namespace.as_deref(),
            };
            let request =
                Request::resource(&path.group, &path.plural, namespace, path.name.as_deref())
                    .with_subresource(path.sub.as_deref().unwrap_or_default());
            (verb_of(method, uri).to_owned(), request)
        }
        _ => (
            method.as_str().to_lowercase(),
            Request::NonResource {
                path: uri.path().to_owned(),
            },
        ),
    }
}

/// Authentication, impersonation and authorization, in kube-apiserver's order: who sent the
/// request, whom they may act as, and whether that identity may do this.
fn admit(sim: &Sim, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let requester = auth::authenticate(&sim.tokens, &sim.store, &sim.authorizer, headers)?;
    let identity = match auth::impersonation(headers)? {
        None => requester,
        Some(impersonation) => {
            for check in impersonation.checks() {
                if let Decision::Denied { reason } =
                    sim.authorizer
                        .authorize(&sim.store, &requester, "impersonate", &check)
                {
                    return Err(rbac::forbidden(&requester, "impersonate", &check, &reason));
                }
            }
            impersonation.identity()
        }
    };
    let (verb, request) = request_attributes(method, uri);
    match sim
        .authorizer
        .authorize(&sim.store, &identity, &verb, &request)
    {
        Decision::Allowed { .. } => Ok(identity),
        Decision::Denied { reason } => Err(rbac::forbidden(&identity, &verb, &request, &reason)),
    }
}

/// `POST .../selfsubjectaccessreviews`: may the requester (after impersonation) do this?
fn access_review(sim: &Sim, identity: &Identity, review: Value) -> Result<Value, ApiError> {
    let text = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (verb, request) = if let Some(attributes) = review.pointer("/spec/resourceAttributes") {
        let namespace = text(attributes, "namespace");
        let name = text(attributes, "name");
        let request = Request::resource(
            &text(attributes, "group"),
            &text(attributes, "resource"),
            Some(namespace.as_str()).filter(|n| !n.is_empty()),
            Some(name.as_str()).filter(|n| !n.is_empty()),
        )
        .with_subresource(&text(attributes, "subresource"));
        (text(attributes, "verb"), request)
    } else if let Some(attributes) = review.pointer("/spec/nonResourceAttributes") {
        (
            text(attributes, "verb"),
            Request::NonResource {
                path: text(attributes, "path"),
            },
        )
    } else {
        return Err(ApiError::invalid(
            "SelfSubjectAccessReview",
            "",
            vec![("spec.resourceAttributes".to_owned(), "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".to_owned())],
        ));
    };
    let status = match sim
        .authorizer
        .authorize(&sim.store, identity, &verb, &request)
    {
        Decision::Allowed { reason } => json!({"allowed": true, "reason": reason}),
        Decision::Denied { reason } if reason.is_empty() => json!({"allowed": false}),
        Decision::Denied { reason } => json!({"allowed": false, "reason": reason}),
    };
    let mut review = review;
    review["status"] = status;
    review["metadata"] = json!({"creationTimestamp": Value::Null});
    Ok(review)
}

/// The `autoscaling/v1` Scale of a StatefulSet or Deployment.
fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let keep = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ];
    let metadata: serde_json::Map<String, Value> = metadata
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// `GET|PUT|PATCH .../statefulsets/NAME/scale`: `kubectl scale` (a merge patch of the Scale).
#[allow(clippy::too_many_arguments)]
fn scale(
    sim: &Sim,
    rt: &Arc<ResourceType>,
    namespace: &str,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
    options: &WriteOptions,
) -> Result<Response, ApiError> {
    let current = scale_of(&sim.store.get(rt, namespace, name)?);
    let wanted = match *method {
        Method::GET => return Ok(json_response(StatusCode::OK, &current)),
        Method::PUT => parse_body(headers, body)?,
        Method::PATCH => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let mut scaled = current.clone();
            match content_type.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => crate::patch::json_patch(&mut scaled, &patch)?,
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    crate::patch::merge_patch(&mut scaled, &patch)
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            }
            scaled
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "scale accepts GET, PUT and PATCH",
            ));
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale.autoscaling",
                name,
                vec![(
                    "spec.replicas".to_owned(),
                    "Invalid value: must be greater than or equal to 0".to_owned(),
                )],
            )
        })?;
    let updated = sim.store.patch(
        rt,
        namespace,
        name,
        PatchKind::Merge,
        &json!({"spec": {"replicas": replicas}}),
        Subresource::Main,
        options,
    )?;
    Ok(json_response(StatusCode::OK, &scale_of(&updated)))
}

/// `POST .../serviceaccounts/NAME/token`: a bound token for that ServiceAccount.
fn token_request(
    sim: &Sim,
    namespace: &str,
    name: &str,
    request: Value,
) -> Result<Value, ApiError> {
    let rt = sim
        .store
        .resolve("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("serviceaccounts are not served"))?;
    let account = sim.store.get(&rt, namespace, name)?;
    let uid = account
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let token = sim.tokens.issue(namespace, name, uid);
    let seconds = request
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    // kube-apiserver raises a shorter request to its minimum of ten minutes.
    let expires = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
            seconds.max(600),
        ))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut answer = request;
    answer["apiVersion"] = json!("authentication.k8s.io/v1");
    answer["kind"] = json!("TokenRequest");
    answer["metadata"] =
        json!({"name": name, "namespace": namespace, "creationTimestamp": crate::store::now()});
    answer["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(answer)
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
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

/// OpenAPI v3 for one group/version: the CRD schemas, which `kubectl explain` reads, and a PATCH
/// operation per kind declaring the `fieldValidation` parameter, which tells kubectl to leave
/// validation to the server instead of downloading every built-in schema.
fn openapi_v3(store: &Store, group: &str, version: &str) -> Value {
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for rt in store.registry().in_group_version(group, version) {
        let gvk = json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
        let prefix = if rt.group.is_empty() {
            format!("/api/{}", rt.version)
        } else {
            format!("/apis/{}/{}", rt.group, rt.version)
        };
        let scope = if rt.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", rt.plural),
            json!({"patch": {
                "operationId": format!("patch{}", rt.kind),
                "x-kubernetes-group-version-kind": gvk[0],
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
        let Some(schema) = &rt.schema else { continue };
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        let name = format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind);
        let mut schema = schema.clone();
        schema["x-kubernetes-group-version-kind"] = gvk;
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            properties.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            properties.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            properties.entry("metadata").or_insert_with(
                || json!({"type": "object", "description": "Standard object's metadata."}),
            );
        }
        schemas.insert(name, schema);
    }
    json!({"openapi": "3.0.0", "info": {"title": "dvt-sim", "version": "v1"}, "paths": paths, "components": {"schemas": schemas}})
}

fn write_options(params: &BTreeMap<String, String>, headers: &HeaderMap) -> WriteOptions {
    WriteOptions {
        field_manager: field_manager(params, headers),
        dry_run: params.get("dryRun").is_some_and(|v| v == "All"),
        client: user_agent(headers),
    }
}

/// A list in pages of `limit`, as kube-apiserver serves clients that page (kube-rs' watcher
/// lists 500 at a time). Every page reports the resourceVersion of the first one, which the
/// continue token carries: a watch from it replays whatever changed while the pages were read.
#[allow(clippy::too_many_arguments)]
fn list_page(
    sim: &Sim,
    rt: &Arc<ResourceType>,
    scope: Option<&str>,
    labels: &Selector,
    fields: &Selector,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Response, ApiError> {
    let (list_rv, after) = match params.get("continue").filter(|c| !c.is_empty()) {
        None => (None, None),
        Some(token) => {
            let mut parts = token.splitn(3, '|');
            match (
                parts.next().and_then(|rv| rv.parse::<u64>().ok()),
                parts.next(),
                parts.next(),
            ) {
                (Some(rv), Some(ns), Some(name)) => {
                    (Some(rv), Some((ns.to_owned(), name.to_owned())))
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid continue token {token:?}"
                    )));
                }
            }
        }
    };
    let (items, current, last) =
        sim.store
            .list_page(rt, scope, labels, fields, after.as_ref(), limit);
    let rv = list_rv.unwrap_or(current);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some((ns, name)) = last {
        metadata["continue"] = json!(format!("{rv}|{ns}|{name}"));
    }
    let (kind, api_version, items) = if wants_metadata(headers) {
        (
            "PartialObjectMetadataList".to_owned(),
            "meta.k8s.io/v1".to_owned(),
            items.iter().map(metadata_only).collect(),
        )
    } else {
        (format!("{}List", rt.kind), rt.api_version(), items)
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn object_request(
    sim: &Sim,
    identity: &Identity,
    rt: &Arc<ResourceType>,
    path: ObjectPath,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let store = &sim.store;
    let params = query_params(uri);
    let namespace = path.namespace.clone().unwrap_or_default();
    if !rt.namespaced && path.namespace.is_some() {
        return Err(ApiError::not_found(
            "resources",
            &format!("{} is cluster-scoped", rt.plural),
        ));
    }
    if rt.create_only {
        if method != Method::POST || path.name.is_some() {
            return Err(ApiError::method_not_allowed(format!(
                "{} accept only create",
                rt.plural
            )));
        }
        let review = parse_body(headers, body)?;
        let answer = match rt.kind.as_str() {
            "SelfSubjectAccessReview" => access_review(sim, identity, review)?,
            _ => {
                let mut review = review;
                review["status"] = json!({"userInfo": identity.to_user_info()});
                review["metadata"] = json!({"creationTimestamp": Value::Null});
                review
            }
        };
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    let sub = match path.sub.as_deref() {
        None => Subresource::Main,
        Some("scale")
            if rt.group == "apps" && matches!(rt.kind.as_str(), "StatefulSet" | "Deployment") =>
        {
            let name = path.name.unwrap_or_default();
            return scale(
                sim,
                rt,
                &namespace,
                &name,
                method,
                headers,
                body,
                &write_options(&params, headers),
            );
        }
        Some("binding") if rt.kind == "Pod" && rt.group.is_empty() => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("binding accepts POST only"));
            }
            let binding = parse_body(headers, body)?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Binding",
                        path.name.as_deref().unwrap_or_default(),
                        vec![("target.name".to_owned(), "Required value".to_owned())],
                    )
                })?;
            let name = path.name.clone().unwrap_or_default();
            store.bind(
                &namespace,
                &name,
                node,
                &field_manager(&params, headers),
                &user_agent(headers),
            )?;
            return Ok(created_status());
        }
        Some("token") if rt.kind == "ServiceAccount" => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("token accepts POST only"));
            }
            let name = path.name.unwrap_or_default();
            let answer = token_request(sim, &namespace, &name, parse_body(headers, body)?)?;
            return Ok(json_response(StatusCode::CREATED, &answer));
        }
        Some("status") if rt.status_subresource => Subresource::Status,
        Some("finalize") if rt.kind == "Namespace" => Subresource::Main,
        Some("eviction") if rt.eviction => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("eviction accepts POST only"));
            }
            let name = path.name.unwrap_or_default();
            store.evict(
                &namespace,
                &name,
                &field_manager(&params, headers),
                &user_agent(headers),
            )?;
            return Ok(created_status());
        }
        Some(other) => return Err(ApiError::not_found("subresources", other)),
    };
    match (method.clone(), path.name) {
        (Method::GET, None) => {
            let labels =
                Selector::parse_labels(params.get("labelSelector").map_or("", String::as_str))?;
            let fields =
                Selector::parse_fields(params.get("fieldSelector").map_or("", String::as_str))?;
            let scope = path.namespace.as_deref();
            if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(
                    sim,
                    rt.clone(),
                    scope.map(str::to_owned),
                    labels,
                    fields,
                    &params,
                    headers,
                );
            }
            if !wants_table(headers)
                && let Some(limit) = params.get("limit").and_then(|l| l.parse::<usize>().ok())
                && limit > 0
            {
                return list_page(sim, rt, scope, &labels, &fields, &params, headers, limit);
            }
            let (items, rv) = store.list(rt, scope, &labels, &fields);
            if wants_table(headers) {
                let include = params.get("includeObject").map_or("", String::as_str);
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(rt, &items, rv, include),
                ));
            }
            if wants_metadata(headers) {
                let items: Vec<Value> = items.iter().map(metadata_only).collect();
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
                ));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        (Method::GET, Some(name)) => {
            let object = store.get(rt, &namespace, &name)?;
            if wants_table(headers) {
                let include = params.get("includeObject").map_or("", String::as_str);
                let rv = store.current_resource_version();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(rt, &[object], rv, include),
                ));
            }
            if wants_metadata(headers) {
                return Ok(json_response(StatusCode::OK, &metadata_only(&object)));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        (Method::POST, None) => {
            let object = parse_body(headers, body)?;
            let created = store.create(rt, &namespace, object, &write_options(&params, headers))?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, Some(name)) => {
            let object = parse_body(headers, body)?;
            let updated = store.replace(
                rt,
                &namespace,
                &name,
                object,
                sub,
                &write_options(&params, headers),
            )?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let force = params.get("force").is_some_and(|f| f == "true");
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" | "application/apply-patch+json" => {
                    PatchKind::Apply { force }
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let patch_body: Value = if matches!(kind, PatchKind::Apply { .. }) {
                serde_yaml::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding apply patch: {e}"))
                })?
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            };
            let options = write_options(&params, headers);
            let was_present = store.get(rt, &namespace, &name).is_ok();
            let updated = store.patch(rt, &namespace, &name, kind, &patch_body, sub, &options)?;
            let status = if was_present {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(status, &updated))
        }
        (Method::DELETE, Some(name)) => {
            let options = delete_options(&params, headers, body)?;
            let result = store.delete(rt, &namespace, &name, &options)?;
            Ok(json_response(StatusCode::OK, &result))
        }
        (Method::DELETE, None) => {
            let labels =
                Selector::parse_labels(params.get("labelSelector").map_or("", String::as_str))?;
            let fields =
                Selector::parse_fields(params.get("fieldSelector").map_or("", String::as_str))?;
            let options = delete_options(&params, headers, body)?;
            let (items, _) = store.list(rt, path.namespace.as_deref(), &labels, &fields);
            let mut deleted = Vec::new();
            for item in items {
                let ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                deleted.push(store.delete(rt, &ns, &name, &options)?);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {}",
            uri.path()
        ))),
    }
}

fn delete_options(
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<DeleteOptions, ApiError> {
    let body = parse_body(headers, body)?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    Ok(DeleteOptions {
        propagation: params
            .get("propagationPolicy")
            .cloned()
            .or_else(|| text(body.get("propagationPolicy"))),
        grace_period_seconds: params
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse().ok())
            .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64)),
        actor: field_manager(params, headers),
        client: user_agent(headers),
        precondition_uid: text(body.pointer("/preconditions/uid")),
        precondition_resource_version: text(body.pointer("/preconditions/resourceVersion")),
        dry_run: params.get("dryRun").is_some_and(|v| v == "All")
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All")),
    })
}

/// The `201 Success` Status kube-apiserver answers to a binding or an eviction.
fn created_status() -> Response {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// A watch line around an object already in JSON: the bytes `event_line` would make.
fn raw_event_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(
    sim: &Sim,
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let store = sim.store.clone();
    let as_table = wants_table(headers);
    let as_metadata = wants_metadata(headers);
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let requested: Option<u64> = params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))
        })
        .transpose()?;
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);

    // Without a resourceVersion (or with "0"), a watch starts with the current state as ADDED
    // events, as the real API server does.
    let mut initial = Vec::new();
    let since = match requested {
        Some(rv) if !send_initial => rv,
        _ => {
            let (items, rv) = store.list(&rt, namespace.as_deref(), &labels, &fields);
            initial = items;
            rv
        }
    };
    let (backlog, mut receiver) = match store.watch_from(&rt.storage_key(), since) {
        Ok(start) => start,
        // kube-apiserver answers a watch from a compacted resourceVersion with 200 and a single
        // ERROR event carrying `410 Expired`; clients (kube-rs' watcher, client-go's reflector)
        // relist on exactly that.
        Err(gone) => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(event_line("ERROR", &gone.to_status())))
                .map_err(|e| ApiError::internal(format!("cannot answer the watch: {e}")));
        }
    };
    let matches = {
        let rt = rt.clone();
        let namespace = namespace.clone();
        move |event: &WatchEvent| {
            event.key == rt.storage_key()
                && namespace.as_ref().is_none_or(|n| *n == event.namespace)
        }
    };
    let render = {
        let store = store.clone();
        let rt = rt.clone();
        move |object: &Value| {
            let presented = store.present(&rt, object);
            if as_table {
                let rv = presented
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                table::to_table(&rt, &[presented], rv, "PartialObjectMetadata")
            } else if as_metadata {
                metadata_only(&presented)
            } else {
                presented
            }
        }
    };
    // The common case sends the event's bytes as they are; a table, a metadata-only watch or
    // another version needs the object as a tree.
    let render_event = {
        let rt = rt.clone();
        let render = render.clone();
        move |event: &WatchEvent| {
            if !as_table && !as_metadata && event.api_version == rt.api_version() {
                raw_event_line(event.event_type.as_str(), &event.json)
            } else {
                event_line(event.event_type.as_str(), &render(&event.object()))
            }
        }
    };
    let bookmark = {
        let rt = rt.clone();
        move |rv: u64, initial_end: bool| {
            let mut metadata = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            event_line(
                "BOOKMARK",
                &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
            )
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut disconnects = store.watch_disconnects();
    // An injected fault closes a fraction of watch streams within two seconds.
    let faults = sim.api_faults.current();
    let dropped_after = (faults.watch_drop_fraction > 0.0
        && sim.api_faults.roll() < faults.watch_drop_fraction)
        .then(|| Duration::from_secs_f64(0.1 + 1.9 * sim.api_faults.roll()));
    let timeout = match (timeout, dropped_after) {
        (Some(t), Some(d)) => Some(t.min(d)),
        (t, d) => t.or(d),
    };
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rv = since;
        for object in &initial {
            if tx.send(event_line("ADDED", &render(object))).await.is_err() {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(bookmark(since, true)).await.is_err() {
            return;
        }
        // Selector changes turn into ADDED/DELETED for the watcher, as Kubernetes does; here an
        // object that stops matching is reported DELETED and one that starts matching ADDED.
        let selected = |event: &WatchEvent| {
            labels.matches_label_map(Some(&event.labels))
                && (fields.is_empty() || fields.matches_fields(&event.object()))
        };
        for event in backlog {
            last_rv = event.resource_version;
            if matches(&event) && selected(&event) && tx.send(render_event(&event)).await.is_err() {
                return;
            }
        }
        loop {
            let sleep_until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if event.resource_version <= last_rv {
                            continue;
                        }
                        last_rv = event.resource_version;
                        if matches(&event) && selected(&event) && tx.send(render_event(&event)).await.is_err() {
                            return;
                        }
                    }
                    // A watcher that falls behind is closed, and resumes from its last resourceVersion.
                    Err(_) => return,
                },
                _ = tokio::time::sleep(BOOKMARK_INTERVAL), if bookmarks => {
                    if tx.send(bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = disconnects.changed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream.boxed()))
        .map_err(|e| ApiError::internal(format!("cannot start the watch stream: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_line_from_stored_bytes_is_the_line_made_from_the_object() {
        let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "é\"b"}}});
        let raw = raw_event_line("MODIFIED", &serde_json::to_vec(&object).unwrap());
        let made = event_line("MODIFIED", &object);
        let parse = |line: &Bytes| {
            assert!(line.ends_with(b"\n"));
            serde_json::from_slice::<Value>(line).unwrap()
        };
        assert_eq!(parse(&raw), parse(&made));
    }
}
