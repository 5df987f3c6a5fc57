//! Server-side printing (`meta.k8s.io/v1` Table), which `kubectl get` asks for: CRD printer
//! columns, and the familiar columns of the built-ins the operator creates.

use serde_json::{Value, json};

use crate::registry::ResourceType;

/// A column: header, type, and how to compute its cell.
struct Column {
    name: String,
    kind: &'static str,
    priority: i64,
    cell: Box<dyn Fn(&Value) -> Value>,
}

/// Kubernetes' short human durations (`45s`, `3m12s`, `5h`, `2d3h`).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else {
        format!("{d}d")
    }
}

fn age_of(timestamp: Option<&str>) -> Value {
    let Some(ts) = timestamp.and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return json!("<unknown>");
    };
    let seconds = k8s_openapi::jiff::Timestamp::now().as_second() - ts.as_second();
    json!(human_duration(seconds))
}

fn path_value<'a>(object: &'a Value, json_path: &str) -> Option<&'a Value> {
    json_path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(object, |v, key| v.get(key))
}

fn name_column() -> Column {
    Column {
        name: "Name".to_owned(),
        kind: "string",
        priority: 0,
        cell: Box::new(|o| o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)),
    }
}

fn age_column() -> Column {
    Column {
        name: "Age".to_owned(),
        kind: "string",
        priority: 0,
        cell: Box::new(|o| {
            age_of(
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str),
            )
        }),
    }
}

fn text(f: impl Fn(&Value) -> String + 'static) -> Box<dyn Fn(&Value) -> Value> {
    Box::new(move |o| json!(f(o)))
}

fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".to_owned();
    }
    // As kube's printPod (pkg/printers/internalversion/printers.go): the first init container
    // that has not completed names the status, unless the pod is initialised.
    let inits = pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array);
    let total = inits.map_or(0, Vec::len);
    let initialised = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    for (i, status) in inits.into_iter().flatten().enumerate() {
        if initialised {
            break;
        }
        let exit = status
            .pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64);
        if exit == Some(0) {
            continue;
        }
        if exit.is_some() {
            return match status
                .pointer("/state/terminated/reason")
                .and_then(Value::as_str)
            {
                Some(reason) => format!("Init:{reason}"),
                None => format!("Init:ExitCode:{}", exit.unwrap_or_default()),
            };
        }
        return match status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
        {
            Some(reason) if reason != "PodInitializing" => format!("Init:{reason}"),
            _ => format!("Init:{i}/{total}"),
        };
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        if let Some(reason) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
        {
            return reason.to_owned();
        }
        if let Some(reason) = status
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            return reason.to_owned();
        }
    }
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_owned()
}

fn columns_for(rt: &ResourceType) -> Vec<Column> {
    if !rt.printer_columns.is_empty() {
        let mut columns = vec![name_column()];
        for definition in &rt.printer_columns {
            let json_path = definition
                .get("jsonPath")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let is_date = definition.get("type").and_then(Value::as_str) == Some("date");
            columns.push(Column {
                name: definition
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                kind: "string",
                priority: definition
                    .get("priority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                cell: Box::new(move |o| match path_value(o, &json_path) {
                    Some(Value::String(ts)) if is_date => age_of(Some(ts)),
                    Some(v) => v.clone(),
                    None => Value::Null,
                }),
            });
        }
        return columns;
    }
    let mut columns = vec![name_column()];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            columns.push(Column {
                name: "Ready".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    let statuses = o
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array);
                    let total = o
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    let ready = statuses
                        .into_iter()
                        .flatten()
                        .filter(|s| s.get("ready") == Some(&json!(true)))
                        .count();
                    format!("{ready}/{total}")
                }),
            });
            columns.push(Column {
                name: "Status".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(pod_status),
            });
            columns.push(Column {
                name: "Restarts".to_owned(),
                kind: "integer",
                priority: 0,
                cell: Box::new(|o| {
                    let restarts: i64 =
                        ["/status/initContainerStatuses", "/status/containerStatuses"]
                            .into_iter()
                            .filter_map(|path| o.pointer(path).and_then(Value::as_array))
                            .flatten()
                            .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                            .sum();
                    json!(restarts)
                }),
            });
            columns.push(age_column());
            columns.push(Column {
                name: "IP".to_owned(),
                kind: "string",
                priority: 1,
                cell: text(|o| {
                    o.pointer("/status/podIP")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                        .to_owned()
                }),
            });
            columns.push(Column {
                name: "Node".to_owned(),
                kind: "string",
                priority: 1,
                cell: text(|o| {
                    o.pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                        .to_owned()
                }),
            });
        }
        ("", "Node") => {
            columns.push(Column {
                name: "Status".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    let ready = o
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|c| c.get("type") == Some(&json!("Ready")))
                        .and_then(|c| c.get("status").and_then(Value::as_str))
                        == Some("True");
                    let mut status = if ready {
                        "Ready".to_owned()
                    } else {
                        "NotReady".to_owned()
                    };
                    if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
                        status.push_str(",SchedulingDisabled");
                    }
                    status
                }),
            });
            columns.push(Column {
                name: "Roles".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|_| "<none>".to_owned()),
            });
            columns.push(age_column());
            columns.push(Column {
                name: "Version".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    o.pointer("/status/nodeInfo/kubeletVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                }),
            });
            columns.push(Column {
                name: "Internal-IP".to_owned(),
                kind: "string",
                priority: 1,
                cell: text(|o| {
                    o.pointer("/status/addresses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|a| a.get("type") == Some(&json!("InternalIP")))
                        .and_then(|a| a.get("address").and_then(Value::as_str))
                        .unwrap_or("<none>")
                        .to_owned()
                }),
            });
            columns.push(Column {
                name: "Zone".to_owned(),
                kind: "string",
                priority: 1,
                cell: text(|o| {
                    o.pointer("/metadata/labels/topology.kubernetes.io~1zone")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                        .to_owned()
                }),
            });
        }
        ("apps", "StatefulSet") | ("apps", "Deployment") => {
            columns.push(Column {
                name: "Ready".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    let ready = o
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let desired = o
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    format!("{ready}/{desired}")
                }),
            });
            columns.push(age_column());
        }
        ("policy", "PodDisruptionBudget") => {
            let field = |path: &'static str| {
                text(move |o| {
                    o.pointer(path).map_or("N/A".to_owned(), |v| {
                        v.as_str().map_or(v.to_string(), str::to_owned)
                    })
                })
            };
            columns.push(Column {
                name: "Min Available".to_owned(),
                kind: "string",
                priority: 0,
                cell: field("/spec/minAvailable"),
            });
            columns.push(Column {
                name: "Max Unavailable".to_owned(),
                kind: "string",
                priority: 0,
                cell: field("/spec/maxUnavailable"),
            });
            columns.push(Column {
                name: "Allowed Disruptions".to_owned(),
                kind: "integer",
                priority: 0,
                cell: Box::new(|o| {
                    o.pointer("/status/disruptionsAllowed")
                        .cloned()
                        .unwrap_or(json!(0))
                }),
            });
            columns.push(age_column());
        }
        (_, "Event") => {
            columns.insert(
                0,
                Column {
                    name: "Type".to_owned(),
                    kind: "string",
                    priority: 0,
                    cell: text(|o| {
                        o.get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    }),
                },
            );
            columns.push(Column {
                name: "Reason".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    o.get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                }),
            });
            columns.push(Column {
                name: "Object".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    let regarding = o
                        .get("regarding")
                        .or_else(|| o.get("involvedObject"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    format!(
                        "{}/{}",
                        regarding
                            .get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_lowercase(),
                        regarding
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    )
                }),
            });
            columns.push(Column {
                name: "Message".to_owned(),
                kind: "string",
                priority: 0,
                cell: text(|o| {
                    o.get("note")
                        .or_else(|| o.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                }),
            });
        }
        _ => columns.push(age_column()),
    }
    columns
}

/// Renders objects as a Table. `include_object` is `Object` for whole objects, anything else for
/// their metadata only (kubectl's default).
pub fn to_table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: u64,
    include_object: &str,
) -> Value {
    let columns = columns_for(rt);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": "",
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(o)).collect();
            let object = if include_object == "Object" {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(Value::Null)})
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(1800), "30m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }
}
