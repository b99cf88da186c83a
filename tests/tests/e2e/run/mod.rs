//! RUN: the environment it gets (`env`), the escapes that must fail (`escape`), its exit
//! code (`exit_code`), `--mount` of every type (`mounts`), secrets (`secrets`), snapshots
//! from an overlay (`overlay`), the isolation modes other than the default chroot
//! (`isolation`) and the scratch directory's removal after the build (`removal`).

mod env;
mod escape;
mod exit_code;
mod isolation;
mod mounts;
mod overlay;
mod removal;
mod secrets;
