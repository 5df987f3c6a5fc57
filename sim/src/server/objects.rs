//! Object requests: get, list (paged, by selector, as a table), create, replace, patch and
//! delete of objects and their status, scale, binding and eviction subresources.

use super::*;

/// The `autoscaling/v1` Scale of a StatefulSet or Deployment.
pub(super) fn scale_of(object: &Value) -> Value {
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
pub(super) fn scale(
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

/// A list in pages of `limit`, as kube-apiserver serves clients that page (kube-rs' watcher
/// lists 500 at a time). Every page reports the resourceVersion of the first one, which the
/// continue token carries: a watch from it replays whatever changed while the pages were read.
#[allow(clippy::too_many_arguments)]
pub(super) fn list_page(
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
pub(super) async fn object_request(
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
                decode_apply_patch(body)?
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            };
            let options = write_options(&params, headers);
            let was_present = store.contains(rt, &namespace, &name);
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

/// An apply patch's body: YAML, of which JSON is a part. Clients (kube-rs, kubectl) send JSON,
/// so it is read as JSON first and as YAML only when it is not: a YAML parse of a JSON body
/// took a third of the simulator's request handling.
pub(super) fn decode_apply_patch(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding apply patch: {e}")))
}

/// The `201 Success` Status kube-apiserver answers to a binding or an eviction.
pub(super) fn created_status() -> Response {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}
