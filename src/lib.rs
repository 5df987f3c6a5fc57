//! dvt-operator runs Distributed Validator (DVT) clusters on Kubernetes: one StatefulSet per
//! member, spread across zones, clients and operators, never taken below its signing threshold.
//!
//! The modules, in the order data flows through them:
//! - [`api`]: the `DistributedValidator` resource (spec, status) and every condition and Event
//!   reason ([`api::reasons`]).
//! - [`domain`]: the rules, with no Kubernetes in them: quorum arithmetic, spec checks, zone
//!   placement and the restart planner.
//! - [`crypto`]: key material: BLS points, EIP-2335 keystores, Charon's lock, and the
//!   test-network key tools.
//! - [`controller`]: the reconcile loop, one file per step (dereference, validate, build,
//!   apply, rollout, status).
//! - [`runtime`]: what runs around the controller: leader election, metrics and health, the
//!   `run` command's process set-up.
//! - [`cli`]: the offline commands (validate, plan, lock verify, keys, crd).
//! - [`plugin`]: `kubectl dv`; [`demo`] and [`chaos`]: the operator on the simulated cluster.

pub mod api;
#[cfg(feature = "demo")]
pub mod chaos;
pub mod cli;
pub mod controller;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod plugin;
pub mod runtime;
