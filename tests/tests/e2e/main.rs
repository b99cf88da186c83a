//! kiln's end-to-end tests, one binary with a module per area: each test runs the real
//! `kiln` binary (or, in `registry::roundtrip`, the library) against real registries,
//! servers and tools, and checks the result with tools kiln did not write. The fixtures
//! (registries, base images, servers, the kiln command line) live in the `kiln-tests`
//! library; what the tests of different areas share while they run side by side (a
//! registry per process, the 127.0.0.1:5000 conformance registry, `DOCKER_CONFIG`) is
//! arranged there too.
//!
//! Run one area with a filter: `cargo test --release -p kiln-tests --test e2e -- run::`.

mod architecture;
mod attest;
mod cli;
mod conformance;
mod context;
mod deploy;
mod dockerfile;
mod errors;
mod executor_image;
mod fixtures;
mod fuzz_smoke;
mod guest;
mod hostile;
mod layers;
mod logs;
mod outputs;
mod parallel_stages;
mod plan;
mod platforms;
mod progress;
mod registry;
mod run;
mod signing;
mod warm;
mod workstation;
