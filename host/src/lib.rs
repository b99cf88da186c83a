//! kiln: builds OCI images from Dockerfiles with no daemon, entirely in userspace.
//!
//! The pipeline, one module per noun: `dockerfile` (parse, expand, plan inputs) → `registry`
//! (pull, push) → `rootfs` (confined root handles, safe extraction) → `sandbox` (the Wasm
//! guest that interprets metadata and file instructions) and `run` (RUN, natively) →
//! `snapshot` (what changed) → `layer` (tar, gzip, digests, blob store) → `image` (config,
//! manifest, outputs). `pipeline` is the orchestrator and the only module that knows the order.

pub mod cache;
pub mod cli;
pub mod context;
pub mod dockerfile;
pub mod error;
pub mod image;
pub mod layer;
pub mod oci;
pub mod pipeline;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod sandbox;
pub mod snapshot;
pub mod warm;
