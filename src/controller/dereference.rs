//! Dereference: what the DV points at, read from the caches and the API (the lock, which
//! Secrets exist, the keystores' public keys, zones, the members' live claim templates), as
//! [`Facts`] for the pure validation. Never a Secret's private material.

use super::caches::Caches;
use super::caches::member_statefulsets;
use super::context::Context;
use super::error::Error;
use super::model::Facts;
use super::model::ReadLock;
use super::model::SecretFacts;
use super::names::member_p2p_service_name;
use super::peers::peer_health;
use super::storage;
use super::waiting_on;
use crate::api::DistributedValidator;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reads what validation needs: the lock and which Secrets exist (metadata only).
pub(super) async fn dereference(dv: &DistributedValidator, ctx: &Context) -> Result<Facts, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let lock = read_lock(dv, ctx).await?;
    // Only the Secrets this DV names, looked up by name.
    let secrets: BTreeMap<String, SecretFacts> = dv
        .spec
        .members
        .iter()
        .flat_map(|m| m.secret_names())
        .filter_map(|name| {
            let secret = ctx
                .caches
                .secrets
                .get(&ObjectRef::new(name).within(&namespace))?;
            Some((
                name.clone(),
                SecretFacts {
                    resource_version: secret.resource_version().unwrap_or_default(),
                },
            ))
        })
        .collect();
    let placement = &dv.spec.placement;
    let mut zones = crate::domain::placement::Zones::new();
    for node in ctx.caches.nodes.state() {
        if let Some(zone) = node.labels().get(&placement.zone_label)
            && (placement.zones.is_empty() || placement.zones.contains(zone))
        {
            *zones.entry(zone.clone()).or_default() += 1;
        }
    }
    let keystores = read_keystores(dv, ctx, &secrets).await?;
    let live_claims = member_statefulsets(dv, &ctx.caches)
        .into_iter()
        .map(|(member, set)| (member, storage::live_claims(&set)))
        .collect();
    // The address each exposed member's LoadBalancer got: what its Charon advertises.
    let p2p_addresses = dv
        .spec
        .members
        .iter()
        .filter(|_| dv.spec.p2p.is_some())
        .filter_map(|m| {
            let name = member_p2p_service_name(&dv.name_any(), &m.name);
            let service = ctx
                .caches
                .services
                .get(&ObjectRef::new(&name).within(&namespace))?;
            let ingress = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()?
                .clone();
            Some((m.name.clone(), ingress.hostname.or(ingress.ip)?))
        })
        .collect();
    Ok(Facts {
        lock,
        p2p_addresses,
        secrets,
        keystores,
        zones,
        live_claims,
        peers: peer_health(ctx, dv),
    })
}

/// Where a DV's cluster lock is kept: namespace, kind, name and key.
pub(super) type LockSource = (String, LockKeptIn, String, String);

/// The kind of object a lock is kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum LockKeptIn {
    ConfigMap,
    Secret,
}

impl std::fmt::Display for LockKeptIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockKeptIn::ConfigMap => "ConfigMap",
            LockKeptIn::Secret => "Secret",
        })
    }
}

/// Each lock as read (or why it could not be), by where it is kept, with the resourceVersion of
/// the ConfigMap or Secret it was read from. A lock is read (one GET) when that version changes,
/// not on every reconcile; only its summary is kept, never its text (see [`ReadLock`]).
#[derive(Default)]
pub(super) struct LockReads(
    std::sync::Mutex<std::collections::HashMap<LockSource, (String, LockRead)>>,
);

/// A lock as read: what it says, or why it could not be read.
pub(super) type LockRead = Result<Arc<ReadLock>, String>;

impl LockReads {
    /// The lock read from `source` at `version`, if it was.
    pub(super) fn at(&self, source: &LockSource, version: &str) -> Option<LockRead> {
        let reads = self.0.lock().ok()?;
        let (read_at, read) = reads.get(source)?;
        (read_at == version).then(|| read.clone())
    }

    pub(super) fn remember(&self, source: LockSource, version: String, read: LockRead) {
        if let Ok(mut reads) = self.0.lock() {
            reads.insert(source, (version, read));
        }
    }

    /// Forgets the locks whose ConfigMap or Secret is gone.
    pub(super) fn retain(&self, exists: impl Fn(&LockSource) -> bool) {
        if let Ok(mut reads) = self.0.lock() {
            reads.retain(|source, _| exists(source));
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().map(|reads| reads.len()).unwrap_or_default()
    }
}

/// The resourceVersion the caches show of the ConfigMap or Secret of `source`, if it exists.
pub(super) fn lock_source_version(caches: &Caches, source: &LockSource) -> Option<String> {
    let (namespace, kind, name, _) = source;
    match kind {
        LockKeptIn::ConfigMap => caches
            .config_maps
            .get(&ObjectRef::new(name).within(namespace))
            .map(|cm| cm.resource_version().unwrap_or_default()),
        LockKeptIn::Secret => caches
            .secrets
            .get(&ObjectRef::new(name).within(namespace))
            .map(|secret| secret.resource_version().unwrap_or_default()),
    }
}

/// The DV's lock: from what was read at the version the caches show, else read now (one GET of
/// the ConfigMap or Secret). Whether the ConfigMap or Secret exists is the caches' answer, as
/// for key-share Secrets. Only the lock's key is read; a lock is public material even when
/// stored in a Secret.
pub(super) async fn read_lock(dv: &DistributedValidator, ctx: &Context) -> Result<LockRead, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let lock = &dv.spec.cluster_lock;
    let source: LockSource = match (&lock.config_map, &lock.secret) {
        (Some(s), _) => (
            namespace,
            LockKeptIn::ConfigMap,
            s.name.clone(),
            s.key.clone(),
        ),
        (None, Some(s)) => (namespace, LockKeptIn::Secret, s.name.clone(), s.key.clone()),
        (None, None) => {
            return Ok(Err(
                "spec.clusterLock names no ConfigMap or Secret".to_owned()
            ));
        }
    };
    let (namespace, kind, name, key) = &source;
    let Some(version) = lock_source_version(&ctx.caches, &source) else {
        return Ok(Err(format!(
            "{kind} {name:?} with the cluster lock does not exist"
        )));
    };
    if let Some(known) = ctx.lock_reads.at(&source, &version) {
        return Ok(known);
    }
    let read_error = |source| Error::ReadLock {
        name: name.clone(),
        source,
    };
    let fetched: Option<(String, Result<String, String>)> = if *kind == LockKeptIn::ConfigMap {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
        waiting_on(api.get_opt(name))
            .await
            .map_err(read_error)?
            .map(|cm| {
                let text = cm.data.as_ref().and_then(|d| d.get(key)).cloned();
                (
                    cm.resource_version().unwrap_or_default(),
                    text.ok_or_else(|| {
                        format!("ConfigMap {name:?} has no key {key:?} with the cluster lock")
                    }),
                )
            })
    } else {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        waiting_on(api.get_opt(name))
            .await
            .map_err(read_error)?
            .map(|secret| {
                let text = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok());
                (
                    secret.resource_version().unwrap_or_default(),
                    text.ok_or_else(|| {
                        format!("Secret {name:?} has no UTF-8 key {key:?} with the cluster lock")
                    }),
                )
            })
    };
    let Some((read_at, text)) = fetched else {
        // Deleted since the cache saw it: the cache will say so too, soon.
        return Ok(Err(format!(
            "{kind} {name:?} with the cluster lock does not exist"
        )));
    };
    let read = text.map(|text| Arc::new(ctx.lock_checks.read(&text)));
    ctx.lock_reads
        .remember(source.clone(), read_at, read.clone());
    Ok(read)
}

/// What `lock::verify` says about each lock document, verified once per document: the BLS checks
/// cost milliseconds, and a lock re-saved unchanged (a label edited) need not pay them again.
/// Keyed by SHA-256 (a collision-resistant hash: whoever can edit a lock must not be able to
/// make it look like one already verified).
#[derive(Default)]
pub(super) struct LockChecks(
    std::sync::Mutex<std::collections::HashMap<[u8; 32], Vec<crate::crypto::lock::LockProblem>>>,
);

impl LockChecks {
    /// `text` parsed, with the problems `lock::verify` finds in it (remembered by digest).
    pub(super) fn read(&self, text: &str) -> ReadLock {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        ReadLock::from_text_with(text, |summary| {
            if let Some(known) = self.0.lock().ok().and_then(|c| c.get(&key).cloned()) {
                return known;
            }
            let problems = crate::crypto::lock::verify(summary);
            if let Ok(mut cache) = self.0.lock() {
                // Bounded: a lock edited over and over must not grow the cache without end.
                if cache.len() >= LOCK_CHECKS_KEPT {
                    cache.clear();
                }
                cache.insert(key, problems.clone());
            }
            problems
        })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().map(|cache| cache.len()).unwrap_or_default()
    }
}

/// Lock documents whose verification is remembered.
pub(super) const LOCK_CHECKS_KEPT: usize = 4096;

/// Public keys of the members' keystores. A Secret is read again only when its
/// resourceVersion changed; of its data only the `pubkey` of each `keystore-N.json` is kept.
pub(super) async fn read_keystores(
    dv: &DistributedValidator,
    ctx: &Context,
    secrets: &BTreeMap<String, SecretFacts>,
) -> Result<BTreeMap<String, Result<BTreeMap<usize, String>, String>>, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut out = BTreeMap::new();
    for member in &dv.spec.members {
        let Some(name) = member.key_share_secret.as_ref().map(|s| &s.name) else {
            continue;
        };
        let Some(facts) = secrets.get(name) else {
            continue;
        };
        let key = (namespace.clone(), name.clone());
        let cached = ctx.keystores.lock().ok().and_then(|cache| {
            cache
                .get(&key)
                .filter(|(rv, _)| *rv == facts.resource_version)
                .map(|(_, keys)| keys.clone())
        });
        let keys = match cached {
            Some(keys) => keys,
            None => {
                let secret =
                    waiting_on(api.get_opt(name))
                        .await
                        .map_err(|source| Error::ReadKeystores {
                            name: name.clone(),
                            source,
                        })?;
                let keys = match secret {
                    None => Err("the Secret disappeared while it was read".to_owned()),
                    Some(secret) => crate::crypto::keystore::public_keys(
                        secret
                            .data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.0.as_slice())),
                    ),
                };
                if let Ok(mut cache) = ctx.keystores.lock() {
                    cache.insert(key, (facts.resource_version.clone(), keys.clone()));
                }
                keys
            }
        };
        out.insert(name.clone(), keys);
    }
    Ok(out)
}
