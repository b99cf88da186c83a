//! kiln's instruction interpreter, built as a wasm32-wasip2 component exporting
//! `kiln:builder/interpreter`. It decides what each metadata and file instruction does —
//! the new image config, which sources COPY/ADD select and where they land, owners and
//! modes, WORKDIR creation — while the host owns every byte on disk and reaches it only
//! through the `fs` import.
//!
//! Everything but `bindings` is plain Rust over the [`files::Files`] trait, so the rules
//! are unit-tested natively against an in-memory tree (`fake`).

mod bindings;
pub mod chmod;
pub mod config;
pub mod copy;
pub mod error;
pub mod exclude;
pub mod execute;
pub mod files;
pub mod healthcheck;
pub mod instruction;
pub mod onbuild;
pub mod path;
pub mod sources;
pub mod user;
pub mod workdir;

#[cfg(test)]
mod fake;

pub use error::{Error, Result};
pub use execute::{execute, resolve_user, start_stage};
pub use files::{Files, RootId};
pub use instruction::{Instruction, Outcome, Roots, StageStart, StageState};
pub use user::Identity;
