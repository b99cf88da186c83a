//! Fixtures for kiln's end-to-end tests.
//!
//! Everything here drives real parts: a Debian `docker-registry` on a loopback port
//! ([`Registry`]), base images assembled from Debian packages ([`busybox_image`],
//! [`debian_image`]) written as OCI layouts ([`ImageLayout`], [`LayerTar`]) and pushed with
//! skopeo, and checks made with tools kiln did not write ([`skopeo_inspect`],
//! [`umoci_unpack`]). The tests themselves live in `tests/e2e/`, one binary with a module
//! per area, one real build each; this crate only knows how to set the stage, start kiln
//! ([`Build`]) and read the results. As every area's tests share that one process, what
//! they share is arranged here: one registry at a time ([`Registry::shared`]), ports of
//! stopped registries kept out of use, the conformance registry's lock, and an isolated
//! `DOCKER_CONFIG` ([`isolate_docker_credentials`]).
//!
//! A fixture that cannot do its job panics with what went wrong: that is how it fails the
//! test calling it, so the workspace's `unwrap_used`/`expect_used` warnings do not apply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build;
mod cloud;
mod conformance;
mod differential;
mod image_view;
mod images;
mod layout;
mod multiarch;
mod proxy;
mod registry;
mod scratch;
mod secure;
mod servers;
mod token;
mod tools;
mod unpacked;

pub use build::{run_kiln, Build};
pub use cloud::{CloudRequest, EcrApi, GoogleAuth};
pub use conformance::{conformance_tally, run_conformance, shared_conformance_dir, ConformanceRun};
pub use differential::{
    read_cases, rewrite_bases, run_differential, Case, CaseMode, DifferentialRun,
};
pub use image_view::{Entry, ImageView};
pub use images::{
    busybox_image, busybox_layer, debian_image, fixture_cache_dir, lock_conformance_registry,
    push_layout,
};
pub use layout::{ImageLayout, LayerTar, RunConfig, DEFAULT_PATH};
pub use multiarch::{arm64_busybox, busybox_multiarch_image};
pub use proxy::{Fault, FaultProxy};
pub use registry::{free_port, free_port_on, loopback_listener, Registry};
pub use scratch::Scratch;
pub use secure::{
    credential_helper, docker_config, loopback_tls_files, tls_host_name, SecureRegistry,
};
pub use servers::{
    bare_git_repo, credential_trap, gcs_server, git_http_server, http_server, require_py, s3_put,
    s3_server, Server, PY_VENV,
};
pub use token::TokenRegistry;
pub use tools::{
    assert_not_in_registry, is_root, isolate_docker_credentials, kiln_bin, processes_with, require,
    require_root, run_checked, run_with_timeout, skopeo_config, skopeo_inspect, try_skopeo_inspect,
    unique_token, workspace_root,
};
pub use unpacked::{umoci_unpack, Unpacked};
