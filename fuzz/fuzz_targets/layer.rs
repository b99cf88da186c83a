//! libFuzzer target `layer`: `kiln::fuzzing::layer` on each input (docs/fuzzing.md). Needs the
//! kiln library: `cargo fuzz run --features host layer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::layer(data));
