//! What a request asks for: its target path parsed, its query, body and headers read (field
//! manager, user agent, metadata-only and table views), and the write and delete options.

use super::*;

/// The Kubernetes verb of a request, as kube-apiserver's audit log names it.
pub(super) fn verb_of(method: &Method, uri: &Uri) -> &'static str {
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

/// A parsed request target.
pub(super) enum Target {
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

pub(super) struct ObjectPath {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
}

pub(super) fn parse_target(path: &str) -> Target {
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

pub(super) fn query_params(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|pairs| pairs.into_iter().collect())
        .unwrap_or_default()
}

pub(super) fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
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
pub(super) fn field_manager(params: &BTreeMap<String, String>, headers: &HeaderMap) -> String {
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
pub(super) fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`: the client
/// wants metadata only (kube-rs' metadata watchers; the operator's view of Secrets).
pub(super) fn wants_metadata(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"))
}

pub(super) fn metadata_only(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub(super) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

pub(super) fn write_options(
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> WriteOptions {
    WriteOptions {
        field_manager: field_manager(params, headers),
        dry_run: params.get("dryRun").is_some_and(|v| v == "All"),
        client: user_agent(headers),
    }
}

pub(super) fn delete_options(
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
