//! Validation of built-in kinds, as kube-apiserver's `pkg/apis/core/validation`,
//! `pkg/apis/apps/validation` and `pkg/apis/policy/validation` do it, for the fields the operator
//! and its tests write; with kube-apiserver's field paths and messages (the message texts of
//! `k8s.io/apimachinery/pkg/util/validation` v0.33.13, its `field` error formats). sim/README.md
//! lists the rules enforced. A write that breaks one gets `422 Invalid`, as from a real server.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::registry::ResourceType;

/// One broken rule: (field path, what kube-apiserver says after the path).
pub type Cause = (String, String);

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// `api.MaxSecretSize`, also the ConfigMap limit (`pkg/apis/core/types.go`).
const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The fields of a StatefulSet's spec an update may change (Kubernetes 1.33).
const STATEFULSET_MUTABLE: [&str; 7] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// What a pod update may change (`ValidatePodUpdate`, Kubernetes 1.33 without in-place
/// resize): images, `activeDeadlineSeconds`, added tolerations, and a negative grace period set
/// to 1. The node is assigned through `pods/binding`, not by an update.
const POD_UPDATABLE: [&str; 5] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// A pod's spec without what an update may change.
fn pod_spec_fixed(pod: &Value) -> Value {
    let mut spec = without(
        pod.get("spec"),
        &[
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ],
    );
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                if let Some(map) = container.as_object_mut() {
                    map.remove("image");
                }
            }
        }
    }
    spec
}

fn invalid(field: &str, value: &str, detail: &str) -> Cause {
    (
        field.to_owned(),
        format!("Invalid value: {value:?}: {detail}"),
    )
}

fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn dns1123_label(field: &str, value: &str, causes: &mut Vec<Cause>) {
    if value.len() > 63 {
        causes.push(invalid(field, value, "must be no more than 63 characters"));
    }
    if !is_dns1123_label(value) {
        causes.push(invalid(field, value, DNS1123_LABEL_MSG));
    }
}

fn dns1123_subdomain(field: &str, value: &str, causes: &mut Vec<Cause>) {
    if value.len() > 253 {
        causes.push(invalid(field, value, "must be no more than 253 characters"));
    }
    if !value.split('.').all(is_dns1123_label) {
        causes.push(invalid(field, value, DNS1123_SUBDOMAIN_MSG));
    }
}

fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    bytes.is_empty()
        || (bytes.iter().all(inner)
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric())
}

/// `ValidateLabels`: each key a qualified name with an optional DNS prefix, each value a label
/// value of at most 63 characters.
fn labels(field: &str, labels: Option<&Value>, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (key, value) in labels {
        let name = key.rsplit_once('/').map_or(key.as_str(), |(prefix, name)| {
            dns1123_subdomain(field, prefix, causes);
            name
        });
        if name.is_empty() || name.len() > 63 || !is_label_value(name) {
            causes.push(invalid(
                field,
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        let value = value.as_str().unwrap_or_default();
        if value.len() > 63 {
            causes.push(invalid(field, value, "must be no more than 63 characters"));
        }
        if !is_label_value(value) {
            causes.push(invalid(field, value, LABEL_VALUE_MSG));
        }
    }
}

/// `IsValidPortName` (IANA_SVC_NAME).
fn port_name(field: &str, name: &str, causes: &mut Vec<Cause>) {
    let mut problems = Vec::new();
    if name.len() > 15 {
        problems.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        problems.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("must not begin or end with a hyphen");
    }
    causes.extend(problems.into_iter().map(|p| invalid(field, name, p)));
}

fn items<'a>(value: &'a Value, field: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    value
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// A probe has exactly one handler (`validateHandler`).
fn probe(field: &str, probe: Option<&Value>, causes: &mut Vec<Cause>) {
    let Some(probe) = probe else { return };
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
        .iter()
        .filter(|h| probe.get(**h).is_some_and(|v| !v.is_null()))
        .count();
    match handlers {
        0 => causes.push((
            field.to_owned(),
            "Required value: must specify a handler type".to_owned(),
        )),
        1 => {}
        _ => causes.push((
            field.to_owned(),
            "Forbidden: may not specify more than 1 handler type".to_owned(),
        )),
    }
}

/// `ValidatePodSpec`, for the rules that apply to what the operator writes. `claims` are the
/// names a StatefulSet's volumeClaimTemplates add as volumes.
fn pod_spec(path: &str, spec: &Value, claims: &BTreeSet<String>, causes: &mut Vec<Cause>) {
    let mut volumes: BTreeSet<String> = claims.clone();
    for (i, volume) in items(spec, "volumes") {
        let name = text(volume, "name");
        let field = format!("{path}.volumes[{i}].name");
        dns1123_label(&field, name, causes);
        if !volumes.insert(name.to_owned()) {
            causes.push((field, format!("Duplicate value: {name:?}")));
        }
    }
    if items(spec, "containers").next().is_none() {
        causes.push((format!("{path}.containers"), "Required value".to_owned()));
    }
    let mut container_names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, container) in items(spec, list) {
            let at = format!("{path}.{list}[{i}]");
            let name = text(container, "name");
            if name.is_empty() {
                causes.push((format!("{at}.name"), "Required value".to_owned()));
            } else {
                dns1123_label(&format!("{at}.name"), name, causes);
                if !container_names.insert(name.to_owned()) {
                    causes.push((format!("{at}.name"), format!("Duplicate value: {name:?}")));
                }
            }
            if text(container, "image").trim().is_empty() {
                causes.push((format!("{at}.image"), "Required value".to_owned()));
            }
            let mut port_names = BTreeSet::new();
            for (p, port) in items(container, "ports") {
                let field = format!("{at}.ports[{p}]");
                if let Some(name) = port.get("name").and_then(Value::as_str) {
                    port_name(&format!("{field}.name"), name, causes);
                    if !port_names.insert(name.to_owned()) {
                        causes.push((
                            format!("{field}.name"),
                            format!("Duplicate value: {name:?}"),
                        ));
                    }
                }
                let number = port
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if !(1..=65535).contains(&number) {
                    causes.push((
                        format!("{field}.containerPort"),
                        format!("Invalid value: {number}: must be between 1 and 65535, inclusive"),
                    ));
                }
            }
            for (m, mount) in items(container, "volumeMounts") {
                let name = text(mount, "name");
                if !volumes.contains(name) {
                    causes.push((
                        format!("{at}.volumeMounts[{m}].name"),
                        format!("Not found: {name:?}"),
                    ));
                }
                if text(mount, "mountPath").is_empty() {
                    causes.push((
                        format!("{at}.volumeMounts[{m}].mountPath"),
                        "Required value".to_owned(),
                    ));
                }
            }
            if list == "containers" {
                for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    probe(&format!("{at}.{kind}"), container.get(kind), causes);
                }
            }
        }
    }
}

fn data_size(object: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|f| object.get(*f).and_then(Value::as_object))
        .flatten()
        .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
        .sum()
}

fn config_keys(object: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    for field in fields {
        for key in object
            .get(*field)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let valid = !key.is_empty()
                && key.len() <= 253
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && key != "."
                && key != ".."
                && !key.starts_with("..");
            if !valid {
                causes.push(invalid(&format!("{field}[{key}]"), key, CONFIG_KEY_MSG));
            }
        }
    }
}

/// Secret `data` is base64: its size is that of the decoded bytes.
fn secret_size(object: &Value) -> usize {
    use base64::Engine;
    object
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let encoded = value.as_str().unwrap_or_default();
            key.len()
                + base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_or(encoded.len(), |d| d.len())
        })
        .sum()
}

fn immutable_data(object: &Value, old: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if object.get("immutable") != old.get("immutable") {
        causes.push((
            "immutable".to_owned(),
            "Forbidden: field is immutable when `immutable` is set".to_owned(),
        ));
    }
    for field in fields {
        if object.get(*field) != old.get(*field) {
            causes.push((
                (*field).to_owned(),
                "Forbidden: field is immutable when `immutable` is set".to_owned(),
            ));
        }
    }
}

fn without(spec: Option<&Value>, fields: &[&str]) -> Value {
    let mut spec = spec.cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
    spec
}

fn storage_request(pvc: &Value) -> Option<&str> {
    pvc.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
}

/// A quantity as a number (bytes for storage and memory, cores for CPU), for Kubernetes'
/// decimal and binary suffixes and `m` (thousandths).
pub fn quantity_bytes(quantity: &str) -> Option<f64> {
    let split = quantity
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(number * factor)
}

/// What a status write is checked for: the object's labels (its spec is the stored one).
pub fn validate_metadata(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    labels(
        "metadata.labels",
        object.pointer("/metadata/labels"),
        &mut causes,
    );
    causes
}

/// What kube-apiserver refuses in `object` (and, for an update, in its change from `old`).
pub fn validate(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Names: DNS labels or subdomains for these kinds (RBAC objects take path segments, Events
    // anything their reporter derives; neither is checked here).
    if old.is_none() && !name.is_empty() {
        match rt.kind.as_str() {
            "Namespace" | "Service" => dns1123_label("metadata.name", name, &mut causes),
            "Pod"
            | "StatefulSet"
            | "PodDisruptionBudget"
            | "NetworkPolicy"
            | "Lease"
            | "Secret"
            | "ConfigMap"
            | "PersistentVolumeClaim"
            | "ServiceAccount" => dns1123_subdomain("metadata.name", name, &mut causes),
            _ => {}
        }
    }
    labels(
        "metadata.labels",
        object.pointer("/metadata/labels"),
        &mut causes,
    );
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = object.get("spec") {
                pod_spec("spec", spec, &BTreeSet::new(), &mut causes);
            }
            if let Some(old) = old
                && pod_spec_fixed(object) != pod_spec_fixed(old)
            {
                // kube-apiserver appends a diff of the two specs; it is left out here.
                causes.push((
                    "spec".to_owned(),
                    format!(
                        "Forbidden: pod updates may not change fields other than {}",
                        POD_UPDATABLE.join(",")
                    ),
                ));
            }
        }
        ("apps", "StatefulSet") => {
            let claims: BTreeSet<String> = object
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|claim| {
                    claim
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            labels(
                "spec.template.labels",
                object.pointer("/spec/template/metadata/labels"),
                &mut causes,
            );
            if let Some(spec) = object.pointer("/spec/template/spec") {
                pod_spec("spec.template.spec", spec, &claims, &mut causes);
            }
            if let Some(old) = old {
                let kept = |o: &Value| without(o.get("spec"), &STATEFULSET_MUTABLE);
                if kept(object) != kept(old) {
                    causes.push((
                        "spec".to_owned(),
                        "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".to_owned(),
                    ));
                }
            }
        }
        ("", "Secret") => {
            config_keys(object, &["data"], &mut causes);
            if secret_size(object) > MAX_DATA_BYTES {
                causes.push((
                    "data".to_owned(),
                    format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
                ));
            }
            if let Some(old) = old {
                immutable_data(object, old, &["data"], &mut causes);
            }
        }
        ("", "ConfigMap") => {
            config_keys(object, &["data", "binaryData"], &mut causes);
            if data_size(object, &["data", "binaryData"]) > MAX_DATA_BYTES {
                causes.push((
                    "[]".to_owned(),
                    format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
                ));
            }
            if let Some(old) = old {
                immutable_data(object, old, &["data", "binaryData"], &mut causes);
            }
        }
        ("", "Service") => {
            if let Some(old) = old {
                let ip = |o: &Value| {
                    o.pointer("/spec/clusterIP")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                if !ip(old).is_empty() && ip(object) != ip(old) {
                    causes.push(invalid(
                        "spec.clusterIPs[0]",
                        &ip(object),
                        "may not change once set",
                    ));
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(old) = old {
                // volumeName may be set once (binding); requests may grow; the rest is fixed.
                let fixed = |o: &Value| {
                    let mut spec =
                        without(o.get("spec"), &["resources", "volumeAttributesClassName"]);
                    if old.pointer("/spec/volumeName").is_none()
                        && let Some(map) = spec.as_object_mut()
                    {
                        map.remove("volumeName");
                    }
                    spec
                };
                if fixed(object) != fixed(old) {
                    causes.push((
                        "spec".to_owned(),
                        "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".to_owned(),
                    ));
                }
                let bytes = |o: &Value| storage_request(o).and_then(quantity_bytes);
                if let (Some(new), Some(before)) = (bytes(object), bytes(old))
                    && new < before
                {
                    causes.push((
                        "spec.resources.requests.storage".to_owned(),
                        "Forbidden: field can not be less than status.capacity".to_owned(),
                    ));
                }
            }
        }
        ("policy", "PodDisruptionBudget") => {
            let spec = object.get("spec");
            if spec.and_then(|s| s.get("minAvailable")).is_some()
                && spec.and_then(|s| s.get("maxUnavailable")).is_some()
            {
                causes.push(("spec".to_owned(), "Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both set".to_owned()));
            }
        }
        _ => {}
    }
    causes
}
