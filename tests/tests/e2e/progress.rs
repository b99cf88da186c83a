//! What a person watching a build sees (`--progress`). In a real terminal (tmux) the live
//! view shows a running step with its elapsed time and its RUN output under it, then the
//! finished steps collapsed to one line with their durations and the summary; the same build
//! with stderr in a pipe writes plain lines with no escape code at all, and with
//! `--progress=json` JSON events with one summary. With
//! `KILN_WRITE_DOCS=1` the captured screens are written to `docs/progress-tty.txt` and
//! `docs/progress-plain.txt`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_tests::{
    busybox_image, kiln_bin, require, unique_token, workspace_root, Registry, Scratch,
};

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    bin: std::path::PathBuf,
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let bin = require("tmux", "tmux");
        let tmux = Tmux {
            bin,
            socket: format!("kiln-e2e-{}", unique_token()),
        };
        let out = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "kiln",
                "-x",
                "110",
                "-y",
                "40",
                command,
            ])
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-L", &self.socket]);
        cmd
    }

    /// The visible screen, or all of it with its history (`-S -`).
    fn capture(&self, history: bool) -> String {
        let mut cmd = self.cmd();
        cmd.args(["capture-pane", "-p", "-t", "kiln"]);
        if history {
            cmd.args(["-S", "-"]);
        }
        String::from_utf8_lossy(&cmd.output().expect("tmux capture-pane").stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// Whether `text` has a duration as the view writes it (`0.1s`, `3.2s`) after `after`.
fn has_duration_after(line: &str, after: &str) -> bool {
    let Some(rest) = line.split(after).nth(1) else {
        return false;
    };
    rest.split_whitespace().any(|w| {
        w.strip_suffix('s')
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.len() == 1
            })
    })
}

fn trimmed(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    lines[..end].join("\n") + "\n"
}

/// Starts `kiln build` of `dockerfile` in a tmux terminal; returns the terminal and the
/// file kiln's exit code will be in. The digest goes to `<name>.digest`.
fn kiln_in_tmux(
    scratch: &Scratch,
    name: &str,
    dockerfile: &str,
    destination: &str,
) -> (Tmux, std::path::PathBuf) {
    let dockerfile_path = scratch.write(&format!("{name}.Dockerfile"), dockerfile);
    let exit_file = scratch.join(&format!("{name}.exit"));
    let script = scratch.write(
        &format!("{name}.sh"),
        &format!(
            "'{kiln}' build --dockerfile '{df}' --context '{ctx}' --kiln-dir '{kd}' \
             --destination '{destination}' > '{digest}'\necho $? > '{exit}.tmp' && mv \
             '{exit}.tmp' '{exit}'\nsleep 600\n",
            kiln = kiln_bin().display(),
            df = dockerfile_path.display(),
            ctx = scratch.context().display(),
            kd = scratch.kiln_dir().display(),
            digest = scratch.join(&format!("{name}.digest")).display(),
            exit = exit_file.display(),
        ),
    );
    (
        Tmux::start(&format!("sh '{}'", script.display())),
        exit_file,
    )
}

/// Waits for kiln to exit in `tmux`; returns its exit code and the whole terminal.
fn finish(tmux: &Tmux, exit_file: &Path) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !exit_file.exists() {
        assert!(Instant::now() < deadline, "kiln did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let code = std::fs::read_to_string(exit_file).unwrap();
    (code.trim().to_string(), tmux.capture(true))
}

#[test]
fn a_failed_step_shows_all_its_output_in_the_terminal() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    // more lines than the running view keeps under a step
    let dockerfile = format!(
        "FROM {base}
RUN for i in 1 2 3 4 5 6 7 8; do echo out-$i; done; exit 7
"
    );
    let destination = registry.reference("e2e/progress:failed");
    let (tmux, exit_file) = kiln_in_tmux(&scratch, "failed", &dockerfile, &destination);
    let (code, screen) = finish(&tmux, &exit_file);
    assert_eq!(code, "7", "a failed RUN's code:\n{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("=> ERROR [stage-0 2/2] RUN for i in"))
        .unwrap_or_else(|| panic!("no failed step:\n{screen}"));
    let shown: Vec<&str> = lines[at + 1..at + 9].iter().map(|l| l.trim_end()).collect();
    let want: Vec<String> = (1..=8).map(|i| format!("  │ out-{i}")).collect();
    assert_eq!(shown, want, "all of the output under the step:\n{screen}");
    assert!(
        lines[at + 9..].iter().any(|l| l.starts_with("error: ")),
        "the error after the view:\n{screen}"
    );
}

#[test]
fn live_view_in_a_terminal_plain_lines_in_a_pipe() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/app.txt", "app\n");
    let dockerfile = format!(
        "FROM {base}\nCOPY app.txt /app.txt\n\
         RUN echo warming-up && sleep 4 && echo done-sleeping | tee /slept\n"
    );
    let destination = registry.reference("e2e/progress:tty");
    let (tmux, exit_file) = kiln_in_tmux(&scratch, "tty", &dockerfile, &destination);

    // the live view: the RUN still going, its elapsed time, its output under it
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = loop {
        let screen = tmux.capture(false);
        let live = screen.lines().any(|l| {
            l.contains("[stage-0 3/3] RUN echo warming-up")
                && !l.trim_start().starts_with("=>")
                && has_duration_after(l, "/slept")
        }) && screen.contains("│ warming-up");
        if live {
            break screen;
        }
        assert!(
            Instant::now() < deadline && !exit_file.exists(),
            "no running step seen; the screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    let (code, finished) = finish(&tmux, &exit_file);
    assert_eq!(code, "0", "kiln failed:\n{finished}");
    for (step, after) in [
        ("=> [stage-0 1/3] FROM", "FROM"),
        ("=> [stage-0 2/3] COPY app.txt /app.txt", "/app.txt"),
        ("=> [stage-0 3/3] RUN echo warming-up", "/slept"),
    ] {
        assert!(
            finished
                .lines()
                .any(|l| l.contains(step) && has_duration_after(l, after)),
            "{step:?} with a duration not in:\n{finished}"
        );
    }
    let digest = std::fs::read_to_string(scratch.join("tty.digest")).unwrap();
    for want in [
        format!("image {}", digest.trim()),
        format!("-> {destination}"),
        "layers: 2 new, 0 cached, ".to_string(),
        "time: context".to_string(),
    ] {
        assert!(finished.contains(&want), "{want:?} not in:\n{finished}");
    }
    assert!(!finished.contains("0 from the base"), "{finished}");
    // the running lines are gone once the build is over
    assert!(
        !finished.lines().any(|l| l.contains("│ warming-up")),
        "the live lines stayed:\n{finished}"
    );

    // the same build in a pipe: one line per step start and end, no escape codes
    let out = scratch
        .build(&dockerfile)
        .destination(&registry.reference("e2e/progress:plain"))
        .run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe:\n{stderr}"
    );
    for want in [
        "[stage-0 3/3] RUN echo warming-up && sleep 4 && echo done-sleeping | tee /slept\n",
        "[stage-0 3/3] warming-up\n",
        "[stage-0 3/3] done-sleeping\n",
        "[stage-0 2/3] DONE ",
        "image sha256:",
        "time: context",
    ] {
        assert!(stderr.contains(want), "{want:?} not in:\n{stderr}");
    }
    let run_done = stderr
        .lines()
        .find(|l| l.starts_with("[stage-0 3/3] DONE "))
        .unwrap_or_else(|| panic!("no end line of the RUN:\n{stderr}"));
    let secs: f64 = run_done["[stage-0 3/3] DONE ".len()..]
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(secs >= 4.0, "the RUN slept 4 s: {run_done}");

    // --progress=json: the steps and the summary as events among the JSON logs
    let out = scratch
        .build(&dockerfile)
        .destination(&registry.reference("e2e/progress:json"))
        .arg("--progress=json")
        .run_ok();
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary: Vec<_> = events.iter().filter(|e| e["event"] == "summary").collect();
    assert_eq!(summary.len(), 1, "one summary event: {events:#?}");
    assert_eq!(summary[0]["digest"], digest.as_str());
    assert_eq!(summary[0]["layers"]["new"], 2);
    assert!(summary[0]["seconds"]["total"].as_f64().unwrap() >= 4.0);
    let run_done = events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == "3/3" && e["status"] == "done")
        .unwrap_or_else(|| panic!("no end of the RUN: {events:#?}"));
    assert_eq!(run_done["stage"], "stage-0");
    assert!(run_done["seconds"].as_f64().unwrap() >= 4.0, "{run_done}");

    if std::env::var_os("KILN_WRITE_DOCS").is_some_and(|v| v == "1") {
        let docs = workspace_root().join("docs");
        let tty = format!(
            "{}\n--- when it is over ---\n\n{}",
            trimmed(&running),
            trimmed(&finished)
        );
        write_doc(&docs.join("progress-tty.txt"), &tty);
        write_doc(&docs.join("progress-plain.txt"), &stderr);
    }
}

fn write_doc(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
