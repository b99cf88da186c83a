//! The vocabulary of the SBOM's readers: a package as one database or binary lists it
//! (`Found`) and the ecosystem its purl type names (`Ecosystem`). Reading is `databases`'
//! and `binaries`', the image-wide scan and the document `sbom`'s.

/// Where a package came from, as its purl type names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    Deb,
    Apk,
    Python,
    Npm,
    Golang,
    Cargo,
}

/// A package as its database lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
}
