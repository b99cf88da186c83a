//! The WASI interfaces linked into the guest: exactly the ones its standard library imports
//! (`wasi:cli` stdio, environment and exit, `wasi:io`, and `wasi:random/insecure-seed` for
//! hash-map seeds). No clocks, no filesystem, no sockets, no cryptographic random: the guest
//! reaches files only through kiln's own `fs` interface, and its context has no preopens, no
//! environment and no arguments. A guest that imported more would fail to instantiate.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::bindings::{cli, io, random, sync};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::WasiView;

/// `wasi:io` resources live in the store's resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the guest's WASI imports to `linker`.
pub(super) fn link<T: WasiView>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    io::error::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    sync::io::poll::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    sync::io::streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    Ok(())
}
