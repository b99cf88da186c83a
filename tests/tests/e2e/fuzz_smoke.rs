//! The fuzz targets' short run, on stable Rust: every input of `fuzz/corpus/<target>/` goes
//! through its target (the same bodies the cargo-fuzz crate in `fuzz/` calls:
//! `kiln::dockerfile::fuzzing` and `kiln::fuzzing`), then a deterministic mutation loop (bit
//! flips, interesting bytes, inserted tokens, deleted and duplicated runs, splices of two
//! corpus inputs; layers are sometimes gzipped after mutation) feeds it new inputs for
//! `KILN_FUZZ_SECONDS` (10 by default) per target. A panic in a target fails the test, and
//! the input that caused it is written to `target/fuzz-smoke/` to be replayed and added to
//! the corpus. The longer run with libFuzzer is docs/fuzzing.md.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln::dockerfile::fuzzing as df;
use kiln_tests::workspace_root;

/// No mutated input grows beyond this.
const MAX_LEN: usize = 64 * 1024;

/// Bytes that mean something to one of the readers.
const INTERESTING: &[u8] = b"\0\x7f\xff\n\r\t \\`\"'$#{}[]()*?!:-+=%/.@<>0";

/// Fragments a mutation inserts whole.
const TOKENS: &[&[u8]] = &[
    b"${A}",
    b"${A:-",
    b"${A:+x}",
    b"${A#*}",
    b"${A%%?}",
    b"${A/x/y}",
    b"$$",
    b"**/",
    b"../",
    b"!",
    b"[^a-z]",
    b"<<EOF\nx\nEOF\n",
    b"\\\n",
    b"# escape=`\n",
    b"RUN ",
    b"FROM a AS b\n",
    b"COPY --from=b ",
    b"ONBUILD ",
    b"[\"a\",",
    b"\"mediaType\":",
    b"{\"manifests\":[",
    b"\"platform\":{\"os\":\"linux\",",
    b"\"diff_ids\":[",
    b"ustar\x00",
    b".wh.",
    b".wh..wh..opq",
    b"\xf0\x9f\x92\xa9",
    b"\xc3\x28",
];

/// One target: its name, the corpus it starts from (`fuzz/corpus/<corpus>/`) and its body.
struct Target {
    name: &'static str,
    corpus: &'static str,
    body: fn(&[u8]),
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn seeded(name: &str) -> Rng {
        let seed = name.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = workspace_root().join("fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!inputs.is_empty(), "{}: no corpus", dir.display());
    inputs
}

/// One mutation of `input`, maybe spliced with `other`.
fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            let at = rng.below(len + 1);
            input.splice(at..at, token.iter().copied());
        }
        3 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(16)).min(len);
            input.drain(from..to);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(64)).min(len);
            let run = input[from..to].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, run);
        }
        5 if !other.is_empty() => {
            let keep = rng.below(len + 1);
            let from = rng.below(other.len());
            input.truncate(keep);
            input.extend_from_slice(&other[from..]);
        }
        6 if len > 0 => {
            // a number in a header or a length field: a random byte somewhere
            let at = rng.below(len);
            input[at] = rng.next() as u8;
        }
        _ => {
            let at = rng.below(len + 1);
            input.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
        }
    }
    input.truncate(MAX_LEN);
}

/// Runs `body` on `input`; on a panic, saves the input and fails naming it.
fn feed(target: &Target, input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| (target.body)(input))).is_ok() {
        return;
    }
    let dir = workspace_root().join("target/fuzz-smoke");
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join(format!("{}-crash", target.name));
    std::fs::write(&saved, input).unwrap();
    panic!(
        "fuzz target {} panicked on {what} (saved as {}; replay it and add it to fuzz/corpus/{}/): {:?}",
        target.name,
        saved.display(),
        target.corpus,
        String::from_utf8_lossy(&input[..input.len().min(300)])
    );
}

fn gzipped(input: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(input).unwrap();
    gz.finish().unwrap()
}

/// Replays the corpus, then mutates it for the time budget; returns the inputs run.
fn smoke(target: &Target, budget: Duration) -> u64 {
    let corpus = corpus(target.corpus);
    for (i, input) in corpus.iter().enumerate() {
        feed(target, input, &format!("corpus input {i}"));
    }
    let mut rng = Rng::seeded(target.name);
    let started = Instant::now();
    let mut runs = corpus.len() as u64;
    while started.elapsed() < budget {
        let mut input = corpus[rng.below(corpus.len())].clone();
        let other = &corpus[rng.below(corpus.len())];
        for _ in 0..=rng.below(4) {
            mutate_once(&mut rng, &mut input, other);
        }
        if target.corpus == "layer" && rng.below(4) == 0 {
            input = gzipped(&input);
        }
        runs += 1;
        feed(target, &input, &format!("mutated input {runs}"));
    }
    eprintln!(
        "fuzz_smoke {}: {runs} inputs in {:.1?}, no crash",
        target.name,
        started.elapsed()
    );
    runs
}

fn budget() -> Duration {
    let secs = std::env::var("KILN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

#[test]
fn dockerfile_parser() {
    smoke(
        &Target {
            name: "dockerfile",
            corpus: "dockerfile",
            body: df::dockerfile,
        },
        budget(),
    );
}

#[test]
fn word_expander() {
    smoke(
        &Target {
            name: "expand",
            corpus: "expand",
            body: df::expand,
        },
        budget(),
    );
}

#[test]
fn dockerignore_rules() {
    smoke(
        &Target {
            name: "dockerignore",
            corpus: "dockerignore",
            body: df::dockerignore,
        },
        budget(),
    );
}

#[test]
fn layer_extractor() {
    smoke(
        &Target {
            name: "layer",
            corpus: "layer",
            body: kiln::fuzzing::layer,
        },
        budget(),
    );
}

#[test]
fn registry_json_readers() {
    smoke(
        &Target {
            name: "registry_json",
            corpus: "registry_json",
            body: kiln::fuzzing::registry_json,
        },
        budget(),
    );
}

/// The loop finds a bug it can reach: a target that panics on a `$` right after a `{` fails
/// the run (no input of the expand corpus holds that pair).
#[test]
fn a_panicking_target_fails_the_run() {
    fn planted(data: &[u8]) {
        assert!(!data.windows(2).any(|w| w == b"{$"), "planted bug");
    }
    let target = Target {
        name: "planted",
        corpus: "expand",
        body: planted,
    };
    let found = catch_unwind(AssertUnwindSafe(|| smoke(&target, Duration::from_secs(10))));
    let message = found.expect_err("the planted bug was not found");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("fuzz target planted panicked"),
        "{message}"
    );
}
