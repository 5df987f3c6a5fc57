//! Who is asking: bearer tokens (the admin's, ServiceAccount tokens from the TokenRequest API)
//! and impersonation, as kube-apiserver's authentication and impersonation filters resolve them
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`).

pub mod rbac;

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::errors::ApiError;
use crate::store::Store;

/// The admin of `dvt-sim serve`'s kubeconfig: in `system:masters`, which kube-apiserver lets do
/// anything without asking RBAC (what kubeadm's `admin.conf` user was until 1.29).
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const MASTERS_GROUP: &str = "system:masters";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An authenticated user, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: String,
}

impl Identity {
    pub fn admin() -> Identity {
        Identity {
            user: ADMIN_USER.to_owned(),
            groups: vec![MASTERS_GROUP.to_owned(), AUTHENTICATED_GROUP.to_owned()],
            uid: String::new(),
        }
    }

    pub fn anonymous() -> Identity {
        Identity {
            user: ANONYMOUS_USER.to_owned(),
            groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
            uid: String::new(),
        }
    }

    /// A ServiceAccount's user name and groups (`pkg/serviceaccount/util.go`).
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Identity {
        Identity {
            user: service_account_user(namespace, name),
            groups: service_account_groups(namespace),
            uid: uid.to_owned(),
        }
    }

    /// `(namespace, name)` when this is a ServiceAccount's user name.
    pub fn as_service_account(&self) -> Option<(&str, &str)> {
        split_service_account_user(&self.user)
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `UserInfo` as TokenReview, SelfSubjectReview and audit render it.
    pub fn to_user_info(&self) -> Value {
        let mut info = json!({"username": self.user, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = json!(self.uid);
        }
        info
    }
}

pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        SERVICE_ACCOUNTS_GROUP.to_owned(),
        format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        AUTHENTICATED_GROUP.to_owned(),
    ]
}

fn split_service_account_user(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// A ServiceAccount a token was issued for; the token stops working when that ServiceAccount
/// (this uid) is gone, as a bound token does.
#[derive(Clone, Debug)]
struct TokenOwner {
    namespace: String,
    name: String,
    uid: String,
}

/// The tokens this server accepts.
pub struct Tokens {
    admin: String,
    issued: Mutex<HashMap<String, TokenOwner>>,
}

/// 32 hex digits that nobody can guess from outside the process: a std `RandomState` hash (keyed
/// per process by the OS's randomness) of a counter.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut digits = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        digits.push_str(&format!("{:016x}", hasher.finish()));
    }
    digits
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens::new()
    }
}

impl Tokens {
    pub fn new() -> Tokens {
        Tokens {
            admin: format!("dvt-sim-admin.{}", random_hex()),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// The admin's bearer token (in the kubeconfig `dvt-sim serve` writes).
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// A new token for a ServiceAccount, as the TokenRequest API issues one.
    pub fn issue(&self, namespace: &str, name: &str, uid: &str) -> String {
        let token = format!("dvt-sim-sa.{}", random_hex());
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                token.clone(),
                TokenOwner {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                },
            );
        token
    }

    fn owner(&self, token: &str) -> Option<TokenOwner> {
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(token)
            .cloned()
    }
}

/// `401 Unauthorized`, as kube-apiserver answers a token it does not accept.
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// Who sent the request, from its bearer token; no token is `system:anonymous`. A
/// ServiceAccount's token holds while that ServiceAccount (that uid) exists.
pub fn authenticate(
    tokens: &Tokens,
    store: &Store,
    authorizer: &rbac::Authorizer,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(Identity::anonymous());
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    if token == tokens.admin() {
        return Ok(Identity::admin());
    }
    let owner = tokens.owner(token).ok_or_else(unauthorized)?;
    let current_uid = authorizer.service_account_uid(store, &owner.namespace, &owner.name);
    if current_uid.as_deref() != Some(owner.uid.as_str()) {
        return Err(unauthorized());
    }
    Ok(Identity::service_account(
        &owner.namespace,
        &owner.name,
        &owner.uid,
    ))
}

/// What `Impersonate-User` and `Impersonate-Group` ask for, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
}

pub fn impersonation(headers: &HeaderMap) -> Result<Option<Impersonation>, ApiError> {
    let user = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    match user {
        Some(user) => Ok(Some(Impersonation { user, groups })),
        None if !groups.is_empty() => Err(ApiError::internal(
            "requested [{Group  ...}] without impersonating a user",
        )),
        None => Ok(None),
    }
}

impl Impersonation {
    /// The checks the impersonation filter makes (verb `impersonate`): on `users` by name, or on
    /// `serviceaccounts` in their namespace for a ServiceAccount's user name, and on each group.
    pub fn checks(&self) -> Vec<rbac::Request> {
        let mut checks = vec![match split_service_account_user(&self.user) {
            Some((namespace, name)) => {
                rbac::Request::resource("", "serviceaccounts", Some(namespace), Some(name))
            }
            None => rbac::Request::resource("", "users", None, Some(&self.user)),
        }];
        checks.extend(
            self.groups
                .iter()
                .map(|group| rbac::Request::resource("", "groups", None, Some(group))),
        );
        checks
    }

    /// The identity requests are then made as: a ServiceAccount's user name without groups gets
    /// the ServiceAccount groups; everyone but `system:anonymous` is in `system:authenticated`.
    pub fn identity(&self) -> Identity {
        let mut groups = self.groups.clone();
        if groups.is_empty()
            && let Some((namespace, _)) = split_service_account_user(&self.user)
        {
            groups = service_account_groups(namespace);
        }
        if self.user != ANONYMOUS_USER && !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        Identity {
            user: self.user.clone(),
            groups,
            uid: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_user_name_splits_into_namespace_and_name() {
        assert_eq!(
            split_service_account_user("system:serviceaccount:dvt-system:dvt-operator"),
            Some(("dvt-system", "dvt-operator"))
        );
        assert_eq!(split_service_account_user("system:serviceaccount:ns"), None);
        assert_eq!(split_service_account_user("alice"), None);
    }

    #[test]
    fn impersonating_a_service_account_gets_its_groups() {
        let identity = Impersonation {
            user: "system:serviceaccount:dvt-system:dvt-operator".to_owned(),
            groups: Vec::new(),
        }
        .identity();
        assert_eq!(
            identity.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:dvt-system",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn impersonating_a_user_with_groups_keeps_them_and_adds_authenticated() {
        let identity = Impersonation {
            user: "alice".to_owned(),
            groups: vec!["ops".to_owned()],
        }
        .identity();
        assert_eq!(identity.groups, ["ops", "system:authenticated"]);
    }

    #[test]
    fn tokens_are_unguessable_and_distinct() {
        let tokens = Tokens::new();
        let a = tokens.issue("ns", "sa", "uid-1");
        let b = tokens.issue("ns", "sa", "uid-1");
        assert_ne!(a, b);
        assert_ne!(tokens.admin(), Tokens::new().admin());
        assert!(a.len() > 40);
    }
}
