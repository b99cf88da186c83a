//! The guest as kiln ships it: compiled when kiln was built (the binary carries no wasm
//! compiler and a fresh kiln dir gets no compiled artifact), and bounded: an instruction that
//! would make the interpreter compute or allocate without end stops at the bound, with an
//! error that names the bound and the Dockerfile line.

use std::fs;

use kiln_tests::{kiln_bin, Scratch};

/// A build in `work` of `dockerfile` with the guest's bounds set through the environment.
fn build_with(work: &Scratch, dockerfile: &str, bound: (&str, &str)) -> std::process::Output {
    work.build(dockerfile)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(work.join("out"))
        .env(bound.0, bound.1)
        .run()
}

#[test]
fn the_binary_carries_no_wasm_compiler_and_writes_no_artifact() {
    let bin = fs::read(kiln_bin()).expect("kiln binary");
    // cranelift's panic locations name its crate; they are in any binary that links it
    let needle = b"cranelift-codegen";
    assert!(
        !bin.windows(needle.len()).any(|w| w == needle),
        "the kiln binary links cranelift: the guest must be compiled ahead of time"
    );
    let work = Scratch::new();
    work.write("ctx/a.txt", "a");
    let out = work
        .build("FROM scratch\nENV A=1\nCOPY a.txt /a.txt\n")
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(work.join("out"))
        .run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stack = vec![work.kiln_dir()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                assert!(
                    !path.to_string_lossy().ends_with(".cwasm"),
                    "a compiled guest was written to the kiln dir: {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn an_instruction_past_the_fuel_bound_stops_with_a_clear_error() {
    let work = Scratch::new();
    for i in 0..300 {
        work.write(&format!("ctx/many/f{i}"), "x");
    }
    let dockerfile = "FROM scratch\nENV A=1\nCOPY many/ /many/\n";
    let out = build_with(&work, dockerfile, ("KILN_GUEST_FUEL", "2000000"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the COPY ran past the bound: {stderr}"
    );
    assert!(stderr.contains("compute budget"), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:3"),
        "the error names line 3: {stderr}"
    );
    // with the default bound the same build passes
    let out = work
        .build(dockerfile)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(work.join("out"))
        .run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_instruction_past_the_memory_bound_stops_with_a_clear_error() {
    let work = Scratch::new();
    work.write("ctx/a.txt", "a");
    let big = "x".repeat(8 << 20);
    let dockerfile = format!("FROM scratch\nLABEL big={big}\n");
    let out = build_with(&work, &dockerfile, ("KILN_GUEST_MEMORY_MB", "4"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // the instruction itself is 8 MB: show the end of the output, where the error is
    let tail = &stderr[stderr.len().saturating_sub(1500)..];
    assert!(
        !out.status.success(),
        "the LABEL ran past the bound: {tail}"
    );
    assert!(stderr.contains("MiB of memory"), "{tail}");
    assert!(
        stderr.contains("Dockerfile:2"),
        "the error names line 2: {tail}"
    );
    // the 8 MB instruction is shown cut short, in the step line and in the error alike
    assert!(
        stderr.len() < 64 << 10,
        "{} bytes of output: {tail}",
        stderr.len()
    );
}
