//! The kiln command line: one `kiln build` assembled flag by flag ([`Build`]), optionally
//! behind a launcher such as `setpriv` or `unshare`, and any other kiln subcommand
//! ([`run_kiln`]). Every run is echoed with its output to the test log.
//!
//! Finding the binary and running processes is `tools.rs`'s business; reading the image a
//! build pushed is `unpacked.rs`'s.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::tools::{describe, kiln_bin, run_with_timeout};
use crate::unpacked::{umoci_unpack, Unpacked};

/// How long one kiln build may take before the test gives up on it.
const KILN_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Runs the kiln binary with `args`; echoes the command and its output to the test log
/// (shown when a test fails).
pub fn run_kiln<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    Build::with_args(args).run()
}

/// One `kiln build` invocation, assembled flag by flag.
#[derive(Debug, Clone)]
pub struct Build {
    launcher: Vec<OsString>,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
}

impl Build {
    /// `kiln build -f DOCKERFILE -c CONTEXT --kiln-dir KILN_DIR`.
    pub fn new(dockerfile: &Path, context: &Path, kiln_dir: &Path) -> Build {
        let mut args: Vec<OsString> = vec!["build".into()];
        for (flag, value) in [
            ("--dockerfile", dockerfile),
            ("--context", context),
            ("--kiln-dir", kiln_dir),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        Build::with_args(args)
    }

    fn with_args(args: Vec<OsString>) -> Build {
        Build {
            launcher: Vec::new(),
            args,
            cwd: None,
            envs: Vec::new(),
        }
    }

    /// Appends one raw argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Build {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Appends `--destination REF`.
    pub fn destination(self, reference: &str) -> Build {
        self.arg("--destination").arg(reference)
    }

    /// Sets an environment variable for kiln.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Build {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Runs kiln from `dir` instead of the test's working directory.
    pub fn current_dir(mut self, dir: &Path) -> Build {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Starts kiln through `program ARGS… kiln …` (e.g. `setpriv --reuid=… --`), which must
    /// exec kiln in the end so that kiln's pid is the launcher's.
    pub fn launched_by<S: AsRef<OsStr>>(mut self, program: &Path, args: &[S]) -> Build {
        self.launcher = std::iter::once(program.as_os_str().to_owned())
            .chain(args.iter().map(|a| a.as_ref().to_owned()))
            .collect();
        self
    }

    fn command(&self) -> Command {
        let mut cmd = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(kiln_bin());
                cmd
            }
            None => Command::new(kiln_bin()),
        };
        cmd.args(&self.args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd
    }

    /// Runs kiln and returns whatever happened.
    pub fn run(&self) -> Output {
        let mut cmd = self.command();
        eprintln!("$ {}", describe(&cmd));
        let out = run_with_timeout(&mut cmd, KILN_TIMEOUT);
        eprintln!(
            "--- kiln {} ---\n{}{}--- end kiln ---",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs kiln and panics (with its stderr) unless it exits 0.
    pub fn run_ok(&self) -> Output {
        let out = self.run();
        if !out.status.success() {
            panic!(
                "kiln build failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// Pushes the build to `destination` (a registry reference), which must succeed, and
    /// unpacks the pushed image with umoci: the common start of a check on an image.
    pub fn push_and_unpack(self, destination: &str) -> Unpacked {
        self.destination(destination).run_ok();
        umoci_unpack(destination)
    }

    /// Starts kiln in the background with its output discarded, for a test that signals it.
    pub fn spawn(&self) -> Child {
        let mut cmd = self.command();
        eprintln!("$ {} &", describe(&cmd));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting kiln")
    }
}
