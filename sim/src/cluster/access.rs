//! Typed reads and writes of the store for the simulated controllers. Every write goes through
//! the same code as an API request, so watchers, kubectl and the timeline see it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::ApiError;
use crate::registry::ResourceType;
use crate::registry::StorageKey;
use crate::store::{Store, Subresource, WriteOptions};

#[derive(Clone)]
pub struct Access {
    pub store: Arc<Store>,
    typed: Arc<Mutex<TypedCaches>>,
}

/// Decoded objects by resource and Rust type (each a [`Decoded`] of that type).
type TypedCaches = HashMap<(StorageKey, TypeId), (u64, Box<dyn Any + Send>)>;

/// Objects of one type by (namespace, name), with the resourceVersion they were decoded at.
type Decoded<T> = HashMap<(String, String), DecodedObject<T>>;

struct DecodedObject<T> {
    resource_version: String,
    object: Arc<T>,
    /// The read that last saw it in the store: an object no longer there is dropped.
    seen: u64,
}

impl Access {
    pub fn new(store: Arc<Store>) -> Access {
        Access {
            store,
            typed: Arc::default(),
        }
    }
}

/// The resource types the controllers use; all built in.
pub struct Types {
    pub nodes: Arc<ResourceType>,
    pub pods: Arc<ResourceType>,
    pub statefulsets: Arc<ResourceType>,
    pub revisions: Arc<ResourceType>,
    pub pvcs: Arc<ResourceType>,
    pub pdbs: Arc<ResourceType>,
    pub services: Arc<ResourceType>,
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
            services: get("", "v1", "services"),
            events: get("", "v1", "events"),
        }
    }

    /// Every object of a type that parses; one that does not is skipped with a warning (a
    /// client may store what the typed model rejects, and the simulation must go on).
    ///
    /// Objects are decoded once per resourceVersion and kept: a pass of the controllers reads
    /// every pod several times, and copying and decoding thousands of them on each read made
    /// the simulator's controllers, not the API, the bottleneck at scale. They are shared, not
    /// copied: a pass reads them through `Arc`s and copies only what it changes.
    pub fn list<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        rt: &ResourceType,
    ) -> Vec<Arc<T>> {
        let mut typed = self
            .typed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (reads, slot) = typed
            .entry((rt.storage_key(), std::any::TypeId::of::<T>()))
            .or_insert_with(|| (0, Box::new(Decoded::<T>::new())));
        let Some(decoded) = slot.downcast_mut::<Decoded<T>>() else {
            return Vec::new();
        };
        *reads += 1;
        let read = *reads;
        let mut objects = Vec::new();
        // Decoded from the stored tree in place: copying each changed object first (and every
        // key, on every read) was a quarter of the simulator's time at 1,000 DVs.
        self.store.visit(rt, |key, value| {
            let version = value["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            if let Some(known) = decoded.get_mut(key)
                && known.resource_version == version
            {
                known.seen = read;
                objects.push(known.object.clone());
                return;
            }
            // A stored object that does not name its own kind and version decodes as it is;
            // one stored under another version is presented as this one first.
            let object = T::deserialize(value).or_else(|_| {
                let mut named = value.clone();
                if let Some(map) = named.as_object_mut() {
                    map.insert("apiVersion".to_owned(), rt.api_version().into());
                    map.insert("kind".to_owned(), rt.kind.clone().into());
                }
                serde_json::from_value::<T>(named)
            });
            match object {
                Ok(object) => {
                    let object = Arc::new(object);
                    decoded.insert(
                        key.clone(),
                        DecodedObject {
                            resource_version: version.to_owned(),
                            object: object.clone(),
                            seen: read,
                        },
                    );
                    objects.push(object);
                }
                Err(error) => {
                    decoded.remove(key);
                    tracing::warn!(kind = %rt.kind, %error, "skipping an object the simulator cannot read");
                }
            }
        });
        if decoded.len() > objects.len() {
            decoded.retain(|_, known| known.seen == read);
        }
        objects
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
        client: manager.to_owned(),
    }
}
