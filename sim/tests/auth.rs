//! Authentication and RBAC through kube-rs: who may do what, and kube-apiserver's answers when
//! they may not.

use dvt_sim::{SimOptions, SimServer};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

fn client(config: Config) -> Client {
    Client::try_from(config).expect("client")
}

/// The API's answer to a refused request: (code, message).
async fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn service_account(admin: &Client, namespace: &str, name: &str) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await;
    Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .expect("service account");
}

#[tokio::test]
async fn anonymous_requests_see_health_and_version_only() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let mut config = server.client_config().unwrap();
    config.auth_info = Default::default();
    let anonymous = client(config);
    anonymous
        .apiserver_version()
        .await
        .expect("/version is public");
    let (code, message) = refusal(
        Api::<Pod>::default_namespaced(anonymous)
            .list(&ListParams::default())
            .await,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    ); // The refusal is recorded, which is what fails an operator test whose requests the chart's
    // RBAC refused.
    let refusals = server.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0]
            .1
            .starts_with("pods is forbidden: User \"system:anonymous\"")
    );
}

#[tokio::test]
async fn a_token_nobody_issued_is_unauthorized() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let mut config = server.client_config().unwrap();
    config.auth_info.token = Some("dvt-sim-sa.guessed".to_owned().into());
    let (code, message) = refusal(
        Api::<Pod>::default_namespaced(client(config))
            .list(&ListParams::default())
            .await,
    )
    .await;
    assert_eq!((code, message.as_str()), (401, "Unauthorized"));
}

#[tokio::test]
async fn a_role_binding_grants_its_namespace_only_and_the_token_dies_with_its_service_account() {
    let server = SimServer::start(SimOptions::default()).await.unwrap();
    let admin = server.client().unwrap();
    service_account(&admin, "a", "op").await;
    service_account(&admin, "b", "other").await;
    Api::<Role>::namespaced(admin.clone(), "a")
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "metadata": {"name": "sts"},
            "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["list", "get"]}]
        })).unwrap())
        .await
        .unwrap();
    for (name, role) in [("sts", "sts"), ("dangling", "missing")] {
        Api::<RoleBinding>::namespaced(admin.clone(), "a")
            .create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "a"}]
            })).unwrap())
            .await
            .unwrap();
    }
    let op = client(server.service_account_config("a", "op").unwrap());
    Api::<StatefulSet>::namespaced(op.clone(), "a")
        .list(&ListParams::default())
        .await
        .expect("allowed in its namespace");
    let (code, message) = refusal(
        Api::<StatefulSet>::namespaced(op.clone(), "b")
            .list(&ListParams::default())
            .await,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "statefulsets.apps is forbidden: User \"system:serviceaccount:a:op\" cannot list resource \"statefulsets\" in API group \"apps\" in the namespace \"b\""
    );
    let (_, message) = refusal(
        Api::<StatefulSet>::all(op.clone())
            .list(&ListParams::default())
            .await,
    )
    .await;
    assert!(
        message.ends_with(
            "cannot list resource \"statefulsets\" in API group \"apps\" at the cluster scope"
        ),
        "{message}"
    );
    // A binding to a Role that does not exist is named in the refusal, as kube-apiserver does.
    let (_, message) = refusal(
        Api::<StatefulSet>::namespaced(op.clone(), "a")
            .delete("x", &DeleteParams::default())
            .await,
    )
    .await;
    assert_eq!(
        message,
        "statefulsets.apps \"x\" is forbidden: User \"system:serviceaccount:a:op\" cannot delete resource \"statefulsets\" in API group \"apps\" in the namespace \"a\": RBAC: role.rbac.authorization.k8s.io \"missing\" not found"
    );
    // Impersonation needs its own permission.
    let mut impersonating = server.service_account_config("a", "op").unwrap();
    impersonating.auth_info.impersonate = Some("alice".to_owned());
    let (code, message) = refusal(
        Api::<Pod>::namespaced(client(impersonating), "a")
            .list(&ListParams::default())
            .await,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "users \"alice\" is forbidden: User \"system:serviceaccount:a:op\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    // The admin may impersonate; the impersonated ServiceAccount gets exactly its own rights.
    let mut as_op = server.client_config().unwrap();
    as_op.auth_info.impersonate = Some("system:serviceaccount:a:op".to_owned());
    let as_op = client(as_op);
    Api::<StatefulSet>::namespaced(as_op.clone(), "a")
        .list(&ListParams::default())
        .await
        .expect("as op");
    assert_eq!(
        refusal(
            Api::<Pod>::namespaced(as_op, "a")
                .list(&ListParams::default())
                .await
        )
        .await
        .0,
        403
    );

    Api::<ServiceAccount>::namespaced(admin, "a")
        .delete("op", &DeleteParams::default())
        .await
        .unwrap();
    let (code, _) = refusal(
        Api::<StatefulSet>::namespaced(op, "a")
            .list(&ListParams::default())
            .await,
    )
    .await;
    assert_eq!(code, 401, "a token outlives no ServiceAccount");
}
