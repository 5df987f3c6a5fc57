//! The StatefulSet controller's pass: pods and claims made from each set's templates, orphans
//! adopted, revisions and status kept (the decisions are in `statefulset`).

use super::*;

/// Objects by (namespace, uid of their controller); those without a controller are left out.
fn by_controller<T>(
    objects: &[Arc<T>],
    metadata: fn(&T) -> &ObjectMeta,
) -> HashMap<(String, String), Vec<&T>> {
    let mut index: HashMap<(String, String), Vec<&T>> = HashMap::new();
    for object in objects {
        let meta = metadata(object);
        if let Some(owner) = meta
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
        {
            index
                .entry((namespace_of(meta), owner.uid.clone()))
                .or_default()
                .push(object.as_ref());
        }
    }
    index
}

/// What a set's plan is made from: the set, its pods and revisions (each at its
/// resourceVersion) and its namespace's claims. A plan is a function of these alone.
fn plan_inputs(
    set: &StatefulSet,
    pods: &[&Pod],
    revisions: &[&ControllerRevision],
    claims: &BTreeSet<String>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    set.metadata.resource_version.hash(&mut hasher);
    for meta in pods
        .iter()
        .map(|p| &p.metadata)
        .chain(revisions.iter().map(|r| &r.metadata))
    {
        (&meta.name, &meta.resource_version).hash(&mut hasher);
    }
    claims.hash(&mut hasher);
    hasher.finish()
}

impl Inner {
    /// The hash of the set's template, kept while its generation stays.
    fn template_hash(&self, set: &StatefulSet) -> String {
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let generation = set.metadata.generation.unwrap_or_default();
        let mut hashes = lock(&self.template_hashes);
        match hashes.get(&uid) {
            Some((known, hash)) if *known == generation => hash.clone(),
            _ => {
                let hash = set
                    .spec
                    .as_ref()
                    .map(|s| statefulset::template_hash(&s.template))
                    .unwrap_or_else(|| statefulset::template_hash(&Default::default()));
                hashes.insert(uid, (generation, hash.clone()));
                hash
            }
        }
    }

    /// Makes `set` the controller of each object (an owner reference added); returns the
    /// stored copies of those adopted.
    pub(super) fn adopt<K>(
        &self,
        set: &StatefulSet,
        rt: &crate::registry::ResourceType,
        objects: Vec<&K>,
        metadata: fn(&mut K) -> &mut ObjectMeta,
    ) -> Vec<K>
    where
        K: Clone + Serialize + serde::de::DeserializeOwned,
    {
        let mut adopted = Vec::new();
        for object in objects {
            let mut owned = object.clone();
            let meta = metadata(&mut owned);
            let (namespace, name) = (namespace_of(meta), name_of(meta));
            meta.owner_references
                .get_or_insert_with(Vec::new)
                .push(statefulset::owner_reference(set));
            if let Ok(stored) = self.access.replace(
                rt,
                &namespace,
                &name,
                &owned,
                Subresource::Main,
                STATEFULSET_CONTROLLER,
            ) && let Ok(stored) = serde_json::from_value::<K>(stored)
            {
                adopted.push(stored);
            }
        }
        adopted
    }

    pub(super) fn statefulsets(&self, budget: &Budget) {
        let sets: Vec<Arc<StatefulSet>> = self.access.list(&self.types.statefulsets);
        // What is kept per set goes with the set.
        let (mut settled, mut hashes) = (lock(&self.settled_sets), lock(&self.template_hashes));
        if settled.len() > sets.len() || hashes.len() > sets.len() {
            let live: std::collections::HashSet<&str> = sets
                .iter()
                .filter_map(|s| s.metadata.uid.as_deref())
                .collect();
            settled.retain(|uid, _| live.contains(uid.as_str()));
            hashes.retain(|uid, _| live.contains(uid.as_str()));
        }
        drop((settled, hashes));
        if sets.is_empty() {
            return;
        }
        let pods: Vec<Arc<Pod>> = self.access.list(&self.types.pods);
        let revisions: Vec<Arc<ControllerRevision>> = self.access.list(&self.types.revisions);
        let claims: Vec<Arc<PersistentVolumeClaim>> = self.access.list(&self.types.pvcs);
        let without_controller = |meta: &ObjectMeta| {
            meta.deletion_timestamp.is_none()
                && !meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.controller == Some(true))
        };
        let orphan_pods: Vec<&Pod> = pods
            .iter()
            .map(AsRef::as_ref)
            .filter(|p: &&Pod| without_controller(&p.metadata))
            .collect();
        let orphan_revisions: Vec<&ControllerRevision> = revisions
            .iter()
            .map(AsRef::as_ref)
            .filter(|r: &&ControllerRevision| without_controller(&r.metadata))
            .collect();
        // Each set's pods, revisions and its namespace's claims, indexed once per pass: scanning
        // every pod, revision and claim for each set made a pass quadratic in the number of
        // StatefulSets (at 4,000 sets a pass took a minute, and pods waited for it).
        let pods_by_owner = by_controller(&pods, |p| &p.metadata);
        let revisions_by_owner = by_controller(&revisions, |r| &r.metadata);
        let mut claims_by_namespace: HashMap<String, BTreeSet<String>> = HashMap::new();
        for claim in &claims {
            claims_by_namespace
                .entry(namespace_of(&claim.metadata))
                .or_default()
                .insert(name_of(&claim.metadata));
        }
        let no_claims = BTreeSet::new();
        for set in &sets {
            if set.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let namespace = namespace_of(&set.metadata);
            let uid = set.metadata.uid.clone().unwrap_or_default();
            let owner = (namespace.clone(), uid);
            // Adoption, as the StatefulSet controller's ControllerRefManager does: a pod named
            // after one of the set's ordinals, and a revision, that match its selector and have no
            // controller (their old set was deleted with `propagationPolicy: Orphan`) become its
            // own; the pod keeps running. Orphans are few (found once per pass, above).
            let selector = set
                .spec
                .as_ref()
                .and_then(|s| serde_json::to_value(&s.selector).ok())
                .unwrap_or_default();
            let set_name = name_of(&set.metadata);
            let adoptable = |meta: &ObjectMeta| {
                namespace_of(meta) == namespace
                    && crate::selectors::label_selector_matches(
                        &selector,
                        &serde_json::json!({"metadata": {"labels": meta.labels}}),
                    )
            };
            let candidates: Vec<&Pod> = orphan_pods
                .iter()
                .copied()
                .filter(|p| {
                    adoptable(&p.metadata)
                        && name_of(&p.metadata)
                            .strip_prefix(&format!("{set_name}-"))
                            .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
                })
                .collect();
            let adopted_pods = self.adopt(set, &self.types.pods, candidates, |p| &mut p.metadata);
            let candidates: Vec<&ControllerRevision> = orphan_revisions
                .iter()
                .copied()
                .filter(|r| adoptable(&r.metadata))
                .collect();
            let adopted_revisions =
                self.adopt(set, &self.types.revisions, candidates, |r| &mut r.metadata);
            let set_pods: Vec<&Pod> = pods_by_owner
                .get(&owner)
                .into_iter()
                .flatten()
                .copied()
                .chain(adopted_pods.iter())
                .collect();
            let set_revisions: Vec<&ControllerRevision> = revisions_by_owner
                .get(&owner)
                .into_iter()
                .flatten()
                .copied()
                .chain(adopted_revisions.iter())
                .collect();
            let claim_names = claims_by_namespace.get(&namespace).unwrap_or(&no_claims);
            // Planning every set on every pass (decoding each revision's template, hashing the
            // set's) was most of a pass at 4,000 sets, though few had anything to do: as the
            // real controller's work queue does, a set is looked at again when what it is made
            // from changes.
            let inputs = plan_inputs(set, &set_pods, &set_revisions, claim_names);
            if lock(&self.settled_sets).get(&owner.1) == Some(&inputs) {
                continue;
            }
            // With the budget spent, a plan (a pod and a revision built from the template) would
            // be thrown away: while thousands of sets wait, that was half of the simulator's CPU.
            // The set is planned in the next pass, which is due at once.
            if budget.spent() {
                continue;
            }
            let hash = self.template_hash(set);
            let plan =
                statefulset::plan_with_hash(set, &hash, &set_pods, claim_names, &set_revisions);
            let status_changed = set.status.as_ref() != Some(&plan.status);
            let writes = usize::from(plan.create_revision.is_some())
                + 2 * plan.create_claims.len()
                + plan.create_pods.len()
                + plan.delete_pods.len()
                + usize::from(status_changed);
            if writes == 0 {
                lock(&self.settled_sets).insert(owner.1.clone(), inputs);
                continue;
            }
            lock(&self.settled_sets).remove(&owner.1);
            if !budget.spend(writes) {
                continue;
            }
            if let Some(revision) = &plan.create_revision
                && let Err(error) = self.access.create(
                    &self.types.revisions,
                    &namespace,
                    revision,
                    STATEFULSET_CONTROLLER,
                )
            {
                tracing::debug!(%error, "revision not created; next pass");
            }
            for claim in &plan.create_claims {
                let mut claim = claim.clone();
                claim.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
                    phase: Some("Bound".into()),
                    access_modes: claim.spec.as_ref().and_then(|s| s.access_modes.clone()),
                    capacity: claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.resources.as_ref())
                        .and_then(|r| r.requests.clone()),
                    ..Default::default()
                });
                if let Some(spec) = claim.spec.as_mut() {
                    spec.volume_name = Some(format!("pvc-{}", name_of(&claim.metadata)));
                }
                match self.access.create(
                    &self.types.pvcs,
                    &namespace,
                    &claim,
                    STATEFULSET_CONTROLLER,
                ) {
                    Ok(created) => {
                        // The provisioner binds it at once; status goes through /status.
                        if let Ok(mut stored) =
                            serde_json::from_value::<PersistentVolumeClaim>(created)
                        {
                            stored.status = claim.status.clone();
                            let _ = self.access.replace(
                                &self.types.pvcs,
                                &namespace,
                                &name_of(&claim.metadata),
                                &stored,
                                Subresource::Status,
                                "persistentvolume-binder-controller",
                            );
                        }
                    }
                    Err(error) => tracing::debug!(%error, "claim not created; next pass"),
                }
            }
            for pod in &plan.create_pods {
                if let Err(error) =
                    self.access
                        .create(&self.types.pods, &namespace, pod, STATEFULSET_CONTROLLER)
                {
                    tracing::debug!(%error, "pod not created; next pass");
                }
            }
            for name in &plan.delete_pods {
                let options = crate::store::DeleteOptions {
                    actor: STATEFULSET_CONTROLLER.into(),
                    ..Default::default()
                };
                let _ = self
                    .access
                    .store
                    .delete(&self.types.pods, &namespace, name, &options);
            }
            if status_changed {
                let mut updated = Arc::unwrap_or_clone(set.clone());
                updated.status = Some(plan.status.clone());
                let _ = self.access.replace(
                    &self.types.statefulsets,
                    &namespace,
                    &name_of(&set.metadata),
                    &updated,
                    Subresource::Status,
                    STATEFULSET_CONTROLLER,
                );
            }
        }
    }
}
