//! Talking to registries: push and pull with the library (`roundtrip`), retries, mounts and
//! mirrors through a fault-injecting proxy (`push`), broken bodies, stalls, SIGTERM and a
//! full disk (`faults`), credentials and TLS (`auth`), bearer
//! tokens (`token`), credentials exchanged for tokens first (`minted`), TLS registries on
//! loopback (`loopback_tls`) and base layers extracted while they download, from registries
//! that lie or cut bodies (`streamed`).

mod auth;
mod faults;
mod loopback_tls;
mod minted;
mod push;
mod roundtrip;
mod streamed;
mod token;
