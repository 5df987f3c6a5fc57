//! Who asks and whether they may: a request's attributes for RBAC, its authentication and
//! authorization, SelfSubjectAccessReviews and ServiceAccount token requests.

use super::*;

/// What RBAC sees of a request: its verb and what it touches (kube-apiserver's `RequestInfo`:
/// for the `namespaces` resource, the namespace is the object's own name).
pub(super) fn request_attributes(method: &Method, uri: &Uri) -> (String, Request) {
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
pub(super) fn admit(
    sim: &Sim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
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
pub(super) fn access_review(
    sim: &Sim,
    identity: &Identity,
    review: Value,
) -> Result<Value, ApiError> {
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

/// `POST .../serviceaccounts/NAME/token`: a bound token for that ServiceAccount.
pub(super) fn token_request(
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
