//! kiln: builds OCI images from Dockerfiles with no daemon, entirely in userspace.
//!
//! The pipeline, one module per noun: `dockerfile` (parse, expand, plan inputs; the
//! `kiln-dockerfile` crate) → `registry` (pull, push) → `rootfs` (confined root handles) →
//! `sandbox` (the Wasm guest that interprets metadata and file instructions) and `run` (RUN,
//! natively) → `snapshot` (what changed) → `layer` (the tar format both ways: extraction,
//! writing, whiteouts, xattrs; compression, digests, blob store) → `image` (config, manifest,
//! outputs). `pipeline` is the orchestrator and the only module that knows the order.

pub mod attest;
pub mod cache;
pub mod cli;
pub mod context;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod layer;
pub mod logging;
pub mod network;
pub mod oci;
pub mod pipeline;
pub mod progress;
pub mod redaction;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod sandbox;
pub mod signing;
pub mod snapshot;
mod task;
pub mod warm;

/// The Dockerfile front end: a crate of its own, so the compiler holds it to doing no I/O and
/// importing nothing from the host.
pub use kiln_dockerfile as dockerfile;
