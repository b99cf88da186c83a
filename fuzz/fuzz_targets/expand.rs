//! libFuzzer target `expand`: `kiln_dockerfile::fuzzing::expand` on each input (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_dockerfile::fuzzing::expand(data));
