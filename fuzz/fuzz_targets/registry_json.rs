//! libFuzzer target `registry_json`: `kiln::fuzzing::registry_json` on each input (docs/fuzzing.md). Needs the
//! kiln library: `cargo fuzz run --features host registry_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::registry_json(data));
