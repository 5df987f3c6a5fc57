//! The RBAC authorizer, ported from kube-apiserver's `plugin/pkg/auth/authorizer/rbac/rbac.go`
//! and `pkg/apis/rbac/v1/evaluation_helpers.go`: a request is allowed when a rule of a role bound
//! to the user (a ClusterRoleBinding anywhere, a RoleBinding in the request's namespace) matches
//! its verb, API group, resource (with subresource) and name, or its path for a non-resource
//! URL. Members of `system:masters` are allowed everything without asking RBAC, as kube-apiserver's
//! privileged-group authorizer does.
//!
//! Not ported: aggregated ClusterRoles (`aggregationRule` fills nothing here) and the escalation
//! check on writes of roles and bindings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde_json::{Value, json};

use super::{Identity, MASTERS_GROUP};
use crate::errors::ApiError;
use crate::selectors::Selector;
use crate::store::Store;

/// What a request touches, as RBAC matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        /// Empty for cluster-scoped requests.
        namespace: String,
        /// Empty for lists, watches and creates.
        name: String,
    },
    NonResource {
        path: String,
    },
}

impl Request {
    pub fn resource(
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Request {
        Request::Resource {
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: String::new(),
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.unwrap_or_default().to_owned(),
        }
    }

    pub fn with_subresource(mut self, sub: &str) -> Request {
        if let Request::Resource { subresource, .. } = &mut self {
            *subresource = sub.to_owned();
        }
        self
    }
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        reason: String,
    },
    /// `reason` is what kube-apiserver appends to the message (`RBAC: ...` when a binding names a
    /// role that does not exist), empty otherwise.
    Denied {
        reason: String,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// The bindings and roles in force, parsed once per change of any of them.
#[derive(Default)]
struct Policy {
    cluster_bindings: Vec<ClusterRoleBinding>,
    role_bindings: HashMap<String, Vec<RoleBinding>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    /// Each ServiceAccount's uid, by (namespace, name): what a token is checked against.
    service_accounts: HashMap<(String, String), String>,
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn objects<T: serde::de::DeserializeOwned>(
    store: &Store,
    plural: &str,
) -> Vec<(String, String, T)> {
    let Some(rt) = store.resolve(RBAC_GROUP, "v1", plural) else {
        return Vec::new();
    };
    let (items, _) = store.list(&rt, None, &Selector::default(), &Selector::default());
    items
        .into_iter()
        .filter_map(|item| {
            let namespace = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            // An object the store accepted but that is not a valid RBAC object grants nothing.
            serde_json::from_value::<T>(item)
                .ok()
                .map(|parsed| (namespace, name, parsed))
        })
        .collect()
}

impl Policy {
    fn read(store: &Store) -> Policy {
        let mut policy = Policy::default();
        for (_, name, role) in objects::<ClusterRole>(store, "clusterroles") {
            policy
                .cluster_roles
                .insert(name, role.rules.unwrap_or_default());
        }
        for (namespace, name, role) in objects::<Role>(store, "roles") {
            policy
                .roles
                .insert((namespace, name), role.rules.unwrap_or_default());
        }
        policy.cluster_bindings = objects::<ClusterRoleBinding>(store, "clusterrolebindings")
            .into_iter()
            .map(|(_, _, binding)| binding)
            .collect();
        for (namespace, _, binding) in objects::<RoleBinding>(store, "rolebindings") {
            policy
                .role_bindings
                .entry(namespace)
                .or_default()
                .push(binding);
        }
        if let Some(rt) = store.resolve("", "v1", "serviceaccounts") {
            let (accounts, _) = store.list(&rt, None, &Selector::default(), &Selector::default());
            for account in accounts {
                let text = |path: &str| {
                    account
                        .pointer(path)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                policy.service_accounts.insert(
                    (text("/metadata/namespace"), text("/metadata/name")),
                    text("/metadata/uid"),
                );
            }
        }
        policy
    }
}

/// The authorizer, with its parsed policy (and the ServiceAccounts tokens are checked against)
/// cached until a role, binding or ServiceAccount changes.
#[derive(Default)]
pub struct Authorizer {
    cache: Mutex<Option<(u64, Arc<Policy>)>>,
}

impl Authorizer {
    fn policy(&self, store: &Store) -> Arc<Policy> {
        let generation = store.auth_generation();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached, policy)) = cache.as_ref()
            && *cached == generation
        {
            return policy.clone();
        }
        let policy = Arc::new(Policy::read(store));
        *cache = Some((generation, policy.clone()));
        policy
    }

    /// The uid of a ServiceAccount that exists (from the cached policy: no store lock).
    pub fn service_account_uid(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
    ) -> Option<String> {
        self.policy(store)
            .service_accounts
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Is `identity` allowed `verb` on `request`?
    pub fn authorize(
        &self,
        store: &Store,
        identity: &Identity,
        verb: &str,
        request: &Request,
    ) -> Decision {
        if identity.in_group(MASTERS_GROUP) {
            return Decision::Allowed {
                reason: String::new(),
            };
        }
        let policy = self.policy(store);
        let mut errors: Vec<String> = Vec::new();
        let allows =
            |rules: &[PolicyRule]| rules.iter().any(|rule| rule_allows(rule, verb, request));
        for binding in &policy.cluster_bindings {
            if !applies(
                binding.subjects.as_deref().unwrap_or_default(),
                identity,
                "",
            ) {
                continue;
            }
            match policy.cluster_roles.get(&binding.role_ref.name) {
                Some(rules) if allows(rules) => {
                    return Decision::Allowed {
                        reason: format!(
                            "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to {}",
                            binding.metadata.name.as_deref().unwrap_or_default(),
                            binding.role_ref.name,
                            subject_of(identity)
                        ),
                    };
                }
                Some(_) => {}
                None => errors.push(format!(
                    "clusterrole.rbac.authorization.k8s.io \"{}\" not found",
                    binding.role_ref.name
                )),
            }
        }
        let namespace = match request {
            Request::Resource { namespace, .. } => namespace.as_str(),
            Request::NonResource { .. } => "",
        };
        if !namespace.is_empty() {
            for binding in policy.role_bindings.get(namespace).into_iter().flatten() {
                if !applies(
                    binding.subjects.as_deref().unwrap_or_default(),
                    identity,
                    namespace,
                ) {
                    continue;
                }
                let (rules, missing) = match binding.role_ref.kind.as_str() {
                    "Role" => (
                        policy
                            .roles
                            .get(&(namespace.to_owned(), binding.role_ref.name.clone())),
                        format!(
                            "role.rbac.authorization.k8s.io \"{}\" not found",
                            binding.role_ref.name
                        ),
                    ),
                    _ => (
                        policy.cluster_roles.get(&binding.role_ref.name),
                        format!(
                            "clusterrole.rbac.authorization.k8s.io \"{}\" not found",
                            binding.role_ref.name
                        ),
                    ),
                };
                match rules {
                    Some(rules) if allows(rules) => {
                        return Decision::Allowed {
                            reason: format!(
                                "RBAC: allowed by RoleBinding \"{}/{namespace}\" of {} \"{}\" to {}",
                                binding.metadata.name.as_deref().unwrap_or_default(),
                                binding.role_ref.kind,
                                binding.role_ref.name,
                                subject_of(identity)
                            ),
                        };
                    }
                    Some(_) => {}
                    None => errors.push(missing),
                }
            }
        }
        let reason = if errors.is_empty() {
            String::new()
        } else if errors.len() == 1 {
            format!("RBAC: {}", errors[0])
        } else {
            format!("RBAC: [{}]", errors.join(", "))
        };
        Decision::Denied { reason }
    }
}

fn subject_of(identity: &Identity) -> String {
    match identity.as_service_account() {
        Some((namespace, name)) => format!("ServiceAccount \"{name}/{namespace}\""),
        None => format!("User \"{}\"", identity.user),
    }
}

/// `appliesToUser` of rbac.go: a ServiceAccount subject without a namespace means the binding's.
fn applies(subjects: &[Subject], identity: &Identity, binding_namespace: &str) -> bool {
    subjects.iter().any(|subject| match subject.kind.as_str() {
        "User" => subject.name == identity.user,
        "Group" => identity.in_group(&subject.name),
        "ServiceAccount" => {
            let namespace = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            !namespace.is_empty()
                && identity.as_service_account() == Some((namespace, subject.name.as_str()))
        }
        _ => false,
    })
}

fn has_or_star(values: Option<&Vec<String>>, wanted: &str) -> bool {
    values.is_some_and(|values| values.iter().any(|v| v == "*" || v == wanted))
}

/// `RuleAllows` of rbac.go with the matchers of evaluation_helpers.go.
fn rule_allows(rule: &PolicyRule, verb: &str, request: &Request) -> bool {
    if !rule.verbs.iter().any(|v| v == "*" || v == verb) {
        return false;
    }
    match request {
        Request::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            let combined = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            has_or_star(rule.api_groups.as_ref(), group)
                && rule.resources.as_ref().is_some_and(|resources| {
                    resources.iter().any(|r| {
                        r == "*"
                            || *r == combined
                            || (!subresource.is_empty()
                                && r.strip_prefix("*/") == Some(subresource.as_str()))
                    })
                })
                && rule
                    .resource_names
                    .as_ref()
                    .is_none_or(|names| names.is_empty() || names.iter().any(|n| n == name))
        }
        Request::NonResource { path } => rule.non_resource_urls.as_ref().is_some_and(|urls| {
            urls.iter().any(|url| {
                url == "*"
                    || url == path
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            })
        }),
    }
}

/// The `403 Forbidden` kube-apiserver answers, with its message
/// (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`, `forbiddenMessage`,
/// wrapped by `apierrors.NewForbidden`).
pub fn forbidden(identity: &Identity, verb: &str, request: &Request, reason: &str) -> ApiError {
    let (message, details) = match request {
        Request::NonResource { path } => (
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                identity.user
            ),
            json!({}),
        ),
        Request::Resource {
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let shown = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace \"{namespace}\"")
            };
            let why = format!(
                "User \"{}\" cannot {verb} resource \"{shown}\" in API group \"{group}\" {scope}",
                identity.user
            );
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let message = if name.is_empty() {
                format!("{qualified} is forbidden: {why}")
            } else {
                format!("{qualified} \"{name}\" is forbidden: {why}")
            };
            let mut details = json!({"group": group, "kind": resource});
            if !name.is_empty() {
                details["name"] = json!(name);
            }
            (message, details)
        }
    };
    let message = if reason.is_empty() {
        message
    } else {
        format!("{message}: {reason}")
    };
    ApiError::new(403, "Forbidden", message).with_details(details)
}

/// The roles and bindings a kube-apiserver bootstraps (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`)
/// that matter here: `cluster-admin` for `system:masters`, discovery and `auth can-i` for every
/// authenticated user, health and version for everyone.
pub fn bootstrap_policy() -> Vec<Value> {
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let annotations = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels, "annotations": annotations}, "rules": rules})
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name, "labels": labels, "annotations": annotations},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects})
    };
    vec![
        role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        role(
            "system:basic-user",
            json!([
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]}
            ]),
        ),
        role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        binding("cluster-admin", &[MASTERS_GROUP]),
        binding("system:discovery", &[super::AUTHENTICATED_GROUP]),
        binding("system:basic-user", &[super::AUTHENTICATED_GROUP]),
        binding(
            "system:public-info-viewer",
            &[super::AUTHENTICATED_GROUP, super::UNAUTHENTICATED_GROUP],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(value: Value) -> PolicyRule {
        serde_json::from_value(value).expect("a policy rule")
    }

    fn patch_sts(namespace: &str, name: &str) -> Request {
        Request::resource("apps", "statefulsets", Some(namespace), Some(name))
    }

    #[test]
    fn a_rule_matches_verb_group_resource_and_name() {
        let r = rule(
            json!({"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "patch"]}),
        );
        assert!(rule_allows(&r, "patch", &patch_sts("ns", "x")));
        assert!(!rule_allows(&r, "delete", &patch_sts("ns", "x")));
        assert!(!rule_allows(
            &r,
            "patch",
            &Request::resource("", "statefulsets", Some("ns"), Some("x"))
        ));
        assert!(!rule_allows(
            &r,
            "patch",
            &Request::resource("apps", "deployments", Some("ns"), Some("x"))
        ));
        let named = rule(
            json!({"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["a"], "verbs": ["get"]}),
        );
        assert!(rule_allows(&named, "get", &patch_sts("ns", "a")));
        assert!(!rule_allows(&named, "get", &patch_sts("ns", "b")));
        assert!(!rule_allows(
            &named,
            "list",
            &Request::resource("apps", "statefulsets", Some("ns"), None)
        ));
    }

    #[test]
    fn list_and_watch_are_separate_verbs() {
        let r = rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}));
        let pods = Request::resource("", "pods", Some("ns"), None);
        assert!(rule_allows(&r, "list", &pods));
        assert!(!rule_allows(&r, "watch", &pods));
    }

    #[test]
    fn a_subresource_needs_its_own_rule_or_a_star() {
        let pods = rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}));
        let eviction =
            Request::resource("", "pods", Some("ns"), Some("p")).with_subresource("eviction");
        assert!(!rule_allows(&pods, "create", &eviction));
        let exact =
            rule(json!({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}));
        assert!(rule_allows(&exact, "create", &eviction));
        let any_status =
            rule(json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}));
        let status = Request::resource("dvt.io", "distributedvalidators", Some("ns"), Some("dv"))
            .with_subresource("status");
        assert!(rule_allows(&any_status, "patch", &status));
        assert!(!rule_allows(
            &any_status,
            "patch",
            &Request::resource("dvt.io", "distributedvalidators", Some("ns"), Some("dv"))
        ));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_a_trailing_star() {
        let r = rule(json!({"nonResourceURLs": ["/api", "/apis/*"], "verbs": ["get"]}));
        let path = |p: &str| Request::NonResource { path: p.to_owned() };
        assert!(rule_allows(&r, "get", &path("/api")));
        assert!(!rule_allows(&r, "get", &path("/api/v1")));
        assert!(rule_allows(&r, "get", &path("/apis/apps/v1")));
        assert!(!rule_allows(&r, "post", &path("/api")));
    }

    #[test]
    fn service_account_subjects_default_to_the_binding_namespace() {
        let subject: Subject =
            serde_json::from_value(json!({"kind": "ServiceAccount", "name": "op"}))
                .expect("subject");
        let op = Identity::service_account("ns", "op", "u");
        assert!(applies(std::slice::from_ref(&subject), &op, "ns"));
        assert!(!applies(std::slice::from_ref(&subject), &op, "other"));
        assert!(!applies(std::slice::from_ref(&subject), &op, ""));
        let group: Subject =
            serde_json::from_value(json!({"kind": "Group", "name": "system:serviceaccounts:ns"}))
                .expect("subject");
        assert!(applies(&[group], &op, ""));
    }

    #[test]
    fn the_forbidden_message_is_kube_apiservers() {
        let op = Identity::service_account("dvt-system", "dvt-operator", "u");
        let error = forbidden(&op, "patch", &patch_sts("y", "x"), "");
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "statefulsets.apps \"x\" is forbidden: User \"system:serviceaccount:dvt-system:dvt-operator\" cannot patch resource \"statefulsets\" in API group \"apps\" in the namespace \"y\""
        );
        let nodes = forbidden(&op, "list", &Request::resource("", "nodes", None, None), "");
        assert_eq!(
            nodes.message,
            "nodes is forbidden: User \"system:serviceaccount:dvt-system:dvt-operator\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let path = forbidden(
            &Identity::anonymous(),
            "get",
            &Request::NonResource {
                path: "/api".to_owned(),
            },
            "",
        );
        assert_eq!(
            path.message,
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
    }
}
