//! The wasmtime settings the guest runs under. build.rs compiles the guest ahead of time with
//! them and the sandbox loads that artifact with them: wasmtime accepts a precompiled
//! component only into an engine configured the same way, so both include this one file.

/// Fuel: guest compute is metered, so a Dockerfile cannot make the interpreter spin.
pub fn config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(true);
    config
}
