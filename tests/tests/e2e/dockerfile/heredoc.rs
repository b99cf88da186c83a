//! Heredocs on COPY, ADD and RUN, checked on pushed images unpacked with umoci: file
//! contents, modes and owners, expansion rules (quoted delimiters keep the body literal,
//! `<<-` strips leading tabs, several heredocs on one line), and RUN's three forms (a lone
//! heredoc as the script, a `#!` script run by its interpreter, heredocs read by the shell
//! itself, including `3<<EOF`).

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use kiln_tests::{busybox_image, kiln_bin, require_root, Registry, Scratch};

#[test]
fn heredocs_on_copy_add_and_run() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/ctx.txt", "from the context\n");
    let dockerfile = format!(
        "FROM {base}
ARG NAME=world
ENV GREETING=hello
COPY <<EOF /hd/plain.txt
$GREETING \"$NAME\" 'x' \\$NAME
EOF
COPY <<'EOF' /hd/quoted.txt
$GREETING ${{NAME}}
EOF
COPY <<-EOT <<two ctx.txt /hd/dir/
\t\ttabbed $NAME
\tEOT
second
two
COPY --chmod=0755 --chown=12:34 <<EOF /hd/script.sh
#!/bin/sh
echo hi
EOF
ADD <<EOF /hd/add.txt
added
EOF
RUN <<EOF
echo \"simple $GREETING\" > /hd/run1.txt
EOF
RUN <<EOF
#!/bin/awk -f
BEGIN {{ print \"awk ran\" > \"/hd/run2.txt\" }}
EOF
RUN cat <<EOF > /hd/run3.txt
shell sees $GREETING
EOF
RUN cat - <<A > /hd/run4.txt && cat <<\"B\" >> /hd/run4.txt
first $NAME
A
second $NAME
B
RUN cat 3<<EOF 0<&3 > /hd/run5.txt
on fd three
EOF
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/heredoc:v1"));

    // unquoted delimiter: variables expanded, quotes kept, `\\$` escapes
    assert_eq!(image.read("/hd/plain.txt"), "hello \"world\" 'x' $NAME\n");
    assert_eq!(image.mode_owner("/hd/plain.txt"), "0644 0:0");
    // quoted delimiter: literal
    assert_eq!(image.read("/hd/quoted.txt"), "$GREETING ${NAME}\n");
    // `<<-` strips leading tabs; several heredocs and a context file into one directory
    assert_eq!(image.read("/hd/dir/EOT"), "tabbed world\n");
    assert_eq!(image.read("/hd/dir/two"), "second\n");
    assert_eq!(image.read("/hd/dir/ctx.txt"), "from the context\n");
    assert_eq!(image.mode_owner("/hd/dir"), "0755 0:0");
    assert_eq!(image.read("/hd/script.sh"), "#!/bin/sh\necho hi\n");
    assert_eq!(image.mode_owner("/hd/script.sh"), "0755 12:34");
    assert_eq!(image.read("/hd/add.txt"), "added\n");
    // RUN: the body as the shell's script
    assert_eq!(image.read("/hd/run1.txt"), "simple hello\n");
    // a `#!` body runs under its interpreter (sh would fail on awk syntax); its scratch
    // file is gone
    assert_eq!(image.read("/hd/run2.txt"), "awk ran\n");
    assert!(!image.path(".kiln-heredoc").exists());
    // heredocs read by the shell: it expands unquoted ones itself
    assert_eq!(image.read("/hd/run3.txt"), "shell sees hello\n");
    assert_eq!(image.read("/hd/run4.txt"), "first world\nsecond $NAME\n");
    assert_eq!(image.read("/hd/run5.txt"), "on fd three\n");
}

#[test]
fn several_heredocs_onto_one_path_last_wins_with_a_warning() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/x", "x");
    let out = scratch
        .build(&format!(
            "FROM {base}\nCOPY <<EOF <<TWO /not-a-dir\na\nEOF\nb\nTWO\nRUN test \"$(cat /not-a-dir)\" = b\n"
        ))
        .arg("--no-push")
        .run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:2: COPY has several sources")
            && stderr.contains("copied onto it in turn"),
        "{stderr}"
    );
}
