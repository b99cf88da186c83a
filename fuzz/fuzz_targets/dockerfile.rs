//! libFuzzer target `dockerfile`: `kiln_dockerfile::fuzzing::dockerfile` on each input (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_dockerfile::fuzzing::dockerfile(data));
