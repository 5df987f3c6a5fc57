//! dvt-operator runs Distributed Validator (DVT) clusters on Kubernetes: one StatefulSet per
//! member, spread across zones, clients and operators, never taken below its signing threshold.

pub mod api;
pub mod bls;
#[cfg(feature = "demo")]
pub mod chaos;
pub mod controller;
pub mod crdgen;
#[cfg(feature = "demo")]
pub mod demo;
pub mod eip2335;
pub mod keys;
pub mod keystore;
pub mod leader;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod placement;
pub mod plan;
pub mod planner;
pub mod plugin;
pub mod quorum;
pub mod validate;
