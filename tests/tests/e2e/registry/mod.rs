//! Talking to registries: push and pull with the library (`roundtrip`), retries, mounts and
//! mirrors through a fault-injecting proxy (`push`), credentials and TLS (`auth`), bearer
//! tokens (`token`) and credentials exchanged for tokens first (`minted`).

mod auth;
mod minted;
mod push;
mod roundtrip;
mod token;
