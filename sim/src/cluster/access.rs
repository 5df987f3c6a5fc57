//! Typed reads and writes of the store for the simulated controllers. Every write goes through
//! the same code as an API request, so watchers, kubectl and the timeline see it.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::ApiError;
use crate::registry::ResourceType;
use crate::selectors::Selector;
use crate::store::{Store, Subresource, WriteOptions};

#[derive(Clone)]
pub struct Access {
    pub store: Arc<Store>,
}

/// The resource types the controllers use; all built in.
pub struct Types {
    pub nodes: Arc<ResourceType>,
    pub pods: Arc<ResourceType>,
    pub statefulsets: Arc<ResourceType>,
    pub revisions: Arc<ResourceType>,
    pub pvcs: Arc<ResourceType>,
    pub pdbs: Arc<ResourceType>,
    pub events: Arc<ResourceType>,
}

impl Access {
    pub fn types(&self) -> Types {
        let get = |group: &str, version: &str, plural: &str| {
            self.store
                .resolve(group, version, plural)
                .unwrap_or_else(|| panic!("{plural} are built into the simulator"))
        };
        Types {
            nodes: get("", "v1", "nodes"),
            pods: get("", "v1", "pods"),
            statefulsets: get("apps", "v1", "statefulsets"),
            revisions: get("apps", "v1", "controllerrevisions"),
            pvcs: get("", "v1", "persistentvolumeclaims"),
            pdbs: get("policy", "v1", "poddisruptionbudgets"),
            events: get("", "v1", "events"),
        }
    }

    /// Every object of a type that parses; one that does not is skipped with a warning (a
    /// client may store what the typed model rejects, and the simulation must go on).
    pub fn list<T: DeserializeOwned>(&self, rt: &ResourceType) -> Vec<T> {
        let (items, _) = self
            .store
            .list(rt, None, &Selector::default(), &Selector::default());
        items
            .into_iter()
            .filter_map(|item| match serde_json::from_value(item) {
                Ok(typed) => Some(typed),
                Err(error) => {
                    tracing::warn!(kind = %rt.kind, %error, "skipping an object the simulator cannot read");
                    None
                }
            })
            .collect()
    }

    pub fn create<T: Serialize>(
        &self,
        rt: &ResourceType,
        namespace: &str,
        object: &T,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let value = serde_json::to_value(object)
            .map_err(|e| ApiError::internal(format!("cannot encode {}: {e}", rt.kind)))?;
        self.store.create(rt, namespace, value, &options(manager))
    }

    /// A full update of the object guarded by its resourceVersion, or of its status
    /// unconditionally: each status here has one writer, the simulated controllers' loop.
    pub fn replace<T: Serialize>(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: &T,
        sub: Subresource,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let mut value = serde_json::to_value(object)
            .map_err(|e| ApiError::internal(format!("cannot encode {}: {e}", rt.kind)))?;
        if sub == Subresource::Status
            && let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut)
        {
            metadata.remove("resourceVersion");
        }
        self.store
            .replace(rt, namespace, name, value, sub, &options(manager))
    }
}

fn options(manager: &str) -> WriteOptions {
    WriteOptions {
        field_manager: manager.to_owned(),
        dry_run: false,
    }
}
