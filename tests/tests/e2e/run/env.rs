//! The environment a RUN gets in chroot mode (as root): Docker's PATH and HOME, BuildKit's
//! hostname, stdin closed, its own PID namespace; background daemons neither keep the build
//! waiting nor survive it; the credentials file and kiln's dir are out of reach; SIGTERM to
//! kiln stops the running command and removes the stage roots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::time::{Duration, Instant};

use kiln_tests::{
    busybox_image, kiln_bin, processes_with, require_root, umoci_unpack, Registry, Scratch,
};

#[test]
fn run_sees_dockers_defaults_and_its_own_pid_namespace() {
    require_root("chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let image = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN echo \"HOME=$HOME\" > /root-env; echo \"PATH=$PATH\" >> /root-env; \
                 hostname >> /root-env; readlink /proc/self/fd/0 >> /root-env; \
                 echo \"pid=$$\" >> /root-env; ls /proc | grep -c '^[0-9]' >> /root-env\n\
             USER nobody\n\
             RUN echo \"HOME=$HOME\" > /tmp/nobody-env; id -u >> /tmp/nobody-env\n"
        ))
        .push_and_unpack(&registry.reference("e2e/run-env:latest"));
    let root_env = image.read("root-env");
    let lines: Vec<&str> = root_env.lines().collect();
    assert_eq!(lines[0], "HOME=/root", "{root_env}");
    assert_eq!(
        lines[1],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(lines[2], "buildkitsandbox", "hostname: {root_env}");
    assert_eq!(lines[3], "/dev/null", "stdin must be closed: {root_env}");
    assert_eq!(
        lines[4], "pid=1",
        "RUN is pid 1 of its own namespace: {root_env}"
    );
    // the shell, ls and grep: nothing of the host
    assert!(
        lines[5].parse::<u32>().unwrap() <= 4,
        "processes visible in RUN: {root_env}"
    );
    let nobody = image.read("tmp/nobody-env");
    assert_eq!(nobody, "HOME=/home\n65534\n");
    // what kiln mounted for the command is not in the image
    image.assert_absent(&["proc", "sys", "dev", "etc/resolv.conf", "etc/hosts"]);
}

#[test]
fn a_background_daemon_neither_blocks_the_build_nor_survives_it() {
    require_root("chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/run-daemon:latest");
    // one daemon keeps kiln's stdout open, one leaves the process group with setsid
    let started = Instant::now();
    scratch
        .build(&format!(
            "FROM {base}\n\
             RUN sleep 1000431 & setsid sleep 1000432 > /dev/null 2>&1 & echo started\n\
             RUN echo next > /next\n"
        ))
        .destination(&destination)
        .run_ok();
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the build waited for the daemon"
    );
    for marker in ["1000431", "1000432"] {
        let left = processes_with(&format!("sleep {marker}"));
        assert!(left.is_empty(), "the RUN's daemon survived: {left:?}");
    }
    assert_eq!(umoci_unpack(&destination).read("next"), "next\n");
}

#[test]
fn run_cannot_read_the_registry_credentials_or_kilns_files() {
    require_root("chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let token = "c2VjcmV0LXB1c2gtdG9rZW4tOTE3";
    let config_dir = scratch.join("docker");
    fs::create_dir_all(&config_dir).unwrap();
    let config = config_dir.join("config.json");
    fs::write(
        &config,
        format!("{{\"auths\":{{\"example.invalid\":{{\"auth\":\"{token}\"}}}}}}"),
    )
    .unwrap();
    let kiln_dir = scratch.kiln_dir();
    let destination = registry.reference("e2e/run-creds:latest");
    let out = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN (cat {cfg}; cat /proc/*/root{cfg}; ls {kdir}; ls /proc/*/root{kdir}; \
                  find / -name config.json -xdev) > /seen 2>/dev/null; true\n",
            cfg = config.display(),
            kdir = kiln_dir.display()
        ))
        .destination(&destination)
        .arg("--verbosity")
        .arg("debug")
        .run_ok();
    let _ = out;
    let image = umoci_unpack(&destination);
    let seen = image.read("seen");
    assert!(
        !seen.contains(token) && !seen.contains("config.json") && !seen.contains("blobs"),
        "RUN saw the credentials or kiln's files:\n{seen}"
    );
}

#[test]
fn sigterm_to_kiln_stops_the_running_command_and_cleans_up() {
    require_root("chroot isolation");
    let kiln = kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let dockerfile = scratch.write("Dockerfile", &format!("FROM {base}\nRUN sleep 1000533\n"));
    let mut child = std::process::Command::new(kiln)
        .arg("build")
        .arg("--dockerfile")
        .arg(&dockerfile)
        .arg("--context")
        .arg(scratch.context())
        .arg("--kiln-dir")
        .arg(scratch.kiln_dir())
        .arg("--no-push")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting kiln");
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes_with("sleep 1000533").is_empty() {
        assert!(Instant::now() < deadline, "the RUN never started");
        assert!(child.try_wait().unwrap().is_none(), "kiln ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kiln did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(143), "kiln exits 128+15 after SIGTERM");
    let left = processes_with("sleep 1000533");
    assert!(left.is_empty(), "the RUN survived kiln: {left:?}");
    let builds: Vec<_> = fs::read_dir(scratch.kiln_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .map(|e| e.path())
        .collect();
    assert!(builds.is_empty(), "stage roots left behind: {builds:?}");
}
