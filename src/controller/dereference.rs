//! Dereference: what the DV points at, read from the caches and the API (the lock, which
//! Secrets exist, the keystores' public keys, zones, the members' live claim templates), as
//! [`Facts`] for the pure validation. Never a Secret's private material.

use super::*;

/// Reads what validation needs: the lock and which Secrets exist (metadata only).
pub(super) async fn dereference(dv: &DistributedValidator, ctx: &Context) -> Result<Facts, Error> {
    let namespace = dv.namespace().unwrap_or_default();
    let lock = match (
        &dv.spec.cluster_lock.config_map,
        &dv.spec.cluster_lock.secret,
    ) {
        (Some(source), _) => match ctx
            .caches
            .config_maps
            .get(&ObjectRef::new(&source.name).within(&namespace))
        {
            None => Err(format!(
                "ConfigMap {:?} with the cluster lock does not exist",
                source.name
            )),
            Some(cm) => cm
                .data
                .as_ref()
                .and_then(|d| d.get(&source.key))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "ConfigMap {:?} has no key {:?} with the cluster lock",
                        source.name, source.key
                    )
                }),
        },
        (None, Some(source)) => {
            // The lock is public material even when stored in a Secret; only its key is read.
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            match waiting_on(secrets.get_opt(&source.name))
                .await
                .map_err(|e| Error::ReadLock {
                    name: source.name.clone(),
                    source: e,
                })? {
                None => Err(format!(
                    "Secret {:?} with the cluster lock does not exist",
                    source.name
                )),
                Some(secret) => secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&source.key))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    .ok_or_else(|| {
                        format!(
                            "Secret {:?} has no UTF-8 key {:?} with the cluster lock",
                            source.name, source.key
                        )
                    }),
            }
        }
        (None, None) => Err("spec.clusterLock names no ConfigMap or Secret".to_owned()),
    };
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
    let lock_verification = lock
        .as_ref()
        .ok()
        .and_then(|text| ctx.lock_checks.verify(text));
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
        lock_verification,
        secrets,
        keystores,
        zones,
        live_claims,
        peers: peer_health(ctx, dv),
    })
}

/// What `lock::verify` says about each lock document, verified once per document: the BLS checks
/// cost milliseconds, and every reconcile of every DV would pay them again. Keyed by SHA-256 (a
/// collision-resistant hash: whoever can edit a lock must not be able to make it look like one
/// already verified).
#[derive(Default)]
pub(super) struct LockChecks(
    std::sync::Mutex<std::collections::HashMap<[u8; 32], Vec<crate::crypto::lock::LockProblem>>>,
);

impl LockChecks {
    /// The problems `lock::verify` finds in `text`; `None` when the document does not parse
    /// (validation reports that).
    pub(super) fn verify(&self, text: &str) -> Option<Vec<crate::crypto::lock::LockProblem>> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if let Some(known) = self.0.lock().ok()?.get(&key) {
            return Some(known.clone());
        }
        let problems = crate::crypto::lock::verify(&crate::crypto::lock::summarize(text).ok()?);
        if let Ok(mut cache) = self.0.lock() {
            // Bounded: a lock edited over and over must not grow the cache without end.
            if cache.len() >= LOCK_CHECKS_KEPT {
                cache.clear();
            }
            cache.insert(key, problems.clone());
        }
        Some(problems)
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
