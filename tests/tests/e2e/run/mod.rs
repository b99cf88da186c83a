//! RUN: the environment it gets (`env`), the escapes that must fail (`escape`), its exit
//! code (`exit_code`), `--mount` of every type (`mounts`), secrets (`secrets`), snapshots
//! from an overlay (`overlay`) and the isolation modes other than the default chroot
//! (`isolation`).

mod env;
mod escape;
mod exit_code;
mod isolation;
mod mounts;
mod overlay;
mod secrets;
