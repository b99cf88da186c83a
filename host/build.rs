//! Builds the guest component (guest/, wasm32-wasip2) and compiles it to native code for the
//! target kiln is built for, so the host embeds the artifact and loads it with no compiler.
//!
//! A nested cargo with its own target dir: sharing the outer one would deadlock on Cargo's
//! lock. The outer build's flags and target are cleared so they don't leak into the guest.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/sandbox/engine.rs"]
mod engine;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=../guest/src");
    println!("cargo:rerun-if-changed=../guest/Cargo.toml");
    println!("cargo:rerun-if-changed=../wit");
    println!("cargo:rerun-if-changed=src/sandbox/engine.rs");
    println!("cargo:rerun-if-env-changed=KILN_GUEST_WASM");
    let wasm = out_dir.join("kiln_guest.wasm");
    // a prebuilt component (e.g. from a guest-only build) skips the nested cargo
    if let Some(prebuilt) = std::env::var_os("KILN_GUEST_WASM") {
        if let Err(e) = std::fs::copy(&prebuilt, &wasm) {
            fail(&format!(
                "copying KILN_GUEST_WASM {}: {e}",
                PathBuf::from(prebuilt).display()
            ));
        }
    } else {
        build_guest(&workspace, &wasm);
    }
    precompile(&wasm, &out_dir.join("kiln_guest.cwasm"));
}

/// Compiles the component for cargo's target with the sandbox's engine settings.
fn precompile(wasm: &Path, cwasm: &Path) {
    let target = std::env::var("TARGET").unwrap_or_default();
    let mut config = engine::config();
    if let Err(e) = config.target(&target) {
        fail(&format!("no wasm compiler for target {target}: {e:#}"));
    }
    let bytes =
        std::fs::read(wasm).unwrap_or_else(|e| fail(&format!("reading {}: {e}", wasm.display())));
    let native = wasmtime::Engine::new(&config)
        .and_then(|engine| engine.precompile_component(&bytes))
        .unwrap_or_else(|e| fail(&format!("compiling the guest for {target}: {e:#}")));
    if let Err(e) = std::fs::write(cwasm, native) {
        fail(&format!("writing {}: {e}", cwasm.display()));
    }
}

/// Runs a nested cargo that builds the guest for wasm32-wasip2, then copies it to `wasm`.
fn build_guest(workspace: &Path, wasm_out: &Path) {
    // beside the outer build's output: CARGO_TARGET_DIR when the caller set one (a
    // container build keeps it in a cache mount), else the workspace's target/
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
        .join("guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "kiln-guest",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("building the guest component failed ({s}); is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)")),
        Err(e) => fail(&format!("running cargo for the guest component: {e}")),
    }
    let wasm = target_dir.join("wasm32-wasip2/release/kiln_guest.wasm");
    if let Err(e) = std::fs::copy(&wasm, wasm_out) {
        fail(&format!("copying {}: {e}", wasm.display()));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
