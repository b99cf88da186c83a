//! RUN cannot get out of its stage root: a Dockerfile on the Debian base (`escape/escape.sh`)
//! tries the chroot trick, the host through `/proc/1/root` and kiln's `/proc/<pid>`, kiln's
//! credentials file, `mknod` of the host's disk and kernel log, `mount`, `unshare`, ptrace
//! of kiln, and checks what it was given (only the basic devices in /dev, Docker's default
//! capabilities, a seccomp filter, /sys and /proc/sys read-only, runc's masked paths). Every
//! attempt must fail in every mode that claims to isolate: chroot as root (on an overlay and
//! on the stage root itself) and rootless as an unprivileged user. Nor can a RUN on the host
//! network use kiln's client-certificate forwarder (`escape/forwarder.pl`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_tests::{
    debian_image, kiln_bin, require, require_root, umoci_unpack, unique_token, Registry, Scratch,
};

use super::isolation::{chown_tree, subid_user};

/// Every attempt `escape.sh` makes, by the name it records.
const ATTEMPTS: [&str; 23] = [
    "chroot_trick",
    "proc1_root",
    "host_file",
    "kiln_environ",
    "docker_config",
    "kiln_root",
    "kiln_mem",
    "ptrace",
    "mknod_disk",
    "mknod_kmsg",
    "dev_kmsg",
    "dev_nodes",
    "mount",
    "unshare",
    "caps",
    "seccomp",
    "sys_ro",
    "kcore",
    "proc_masked",
    "proc_sys_ro",
    "sysrq",
    // the two files the test itself checks
    "marker_absent",
    "all_recorded",
];

/// How kiln is started for one mode.
enum Mode {
    /// as root, default isolation (chroot), with extra kiln arguments
    Root(&'static [&'static str]),
    /// as the user kiln-test (rootless, subordinate ids)
    Rootless,
}

/// Builds the escape Dockerfile in `mode`; returns each attempt with what happened.
fn attempt_escapes(mode: Mode) -> Vec<(String, String)> {
    require_root("building as root, or switching to the user kiln-test");
    kiln_bin();
    let registry = Registry::shared();
    let base = debian_image(&registry);
    let scratch = Scratch::new();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let secret = format!("kiln-escape-secret-{}", unique_token());
    let docker = scratch.join("docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        format!("{{\"auths\":{{\"example.invalid\":{{\"auth\":\"{secret}\"}}}}}}"),
    )
    .unwrap();
    let host_file = scratch.write("host-file", &format!("{secret}\n"));
    let marker = Path::new("/tmp").join(format!("kiln-escaped-{}", unique_token()));
    let root_dev = fs::metadata("/").unwrap().dev();
    // Linux's dev_t: the major in bits 8-19 and 32-63, the minor in bits 0-7 and 20-31
    let major = ((root_dev >> 8) & 0xfff) | ((root_dev >> 32) & !0xfff);
    let minor = (root_dev & 0xff) | ((root_dev >> 12) & !0xff);
    let root_dev = format!("{major} {minor}");
    fs::write(
        scratch.context().join("escape.sh"),
        include_str!("escape/escape.sh"),
    )
    .unwrap();
    let layout = scratch.join("out");
    let build = scratch
        .build(&format!(
            "FROM {base}\n\
             ARG KILN_PID DCFG SECRET HOSTFILE ROOTDEV MARKER\n\
             COPY escape.sh /escape.sh\n\
             RUN sh /escape.sh\n"
        ))
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&layout)
        .arg("--build-arg")
        .arg(format!("DCFG={}", docker.display()))
        .arg("--build-arg")
        .arg(format!("SECRET={secret}"))
        .arg("--build-arg")
        .arg(format!("HOSTFILE={}", host_file.display()))
        .arg("--build-arg")
        .arg(format!("ROOTDEV={root_dev}"))
        .arg("--build-arg")
        .arg(format!("MARKER={}", marker.display()))
        .env("DOCKER_CONFIG", &docker)
        .env("KILN_ESCAPE_SECRET", &secret)
        .env("HOME", scratch.path());
    // kiln's pid is the launching shell's: it execs kiln (through setpriv when rootless)
    let sh = require("sh", "dash");
    let build = match mode {
        Mode::Root(args) => args
            .iter()
            .fold(build, |b, a| b.arg(a))
            .launched_by(&sh, &["-c", "exec \"$0\" \"$@\" --build-arg KILN_PID=$$"]),
        Mode::Rootless => {
            let setpriv = require("setpriv", "util-linux");
            require("newuidmap", "uidmap");
            let (user, uid, gid) = subid_user();
            chown_tree(scratch.path(), uid, gid);
            let script = format!(
                "exec {} --reuid={user} --regid={user} --init-groups --inh-caps=-all -- \
                 \"$0\" \"$@\" --build-arg KILN_PID=$$",
                setpriv.display()
            );
            build.launched_by(&sh, &["-c".to_string(), script])
        }
    };
    let out = build.run();
    let marker_there = marker.exists();
    let _ = fs::remove_file(&marker);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the escape build failed:\n{stderr}");
    let image = umoci_unpack(&format!("oci:{}:latest", layout.display()));
    let mut results: Vec<(String, String)> = image
        .read("results")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let verdict = |bad: bool, why: &str| match bad {
        true => format!("ESCAPED {why}"),
        false => "ok".to_string(),
    };
    results.push((
        "marker_absent".into(),
        verdict(marker_there, &format!("{} was written", marker.display())),
    ));
    let missing: Vec<&str> = ATTEMPTS[..ATTEMPTS.len() - 2]
        .iter()
        .copied()
        .filter(|a| *a != "ptrace" || std::env::consts::ARCH == "x86_64")
        .filter(|a| !results.iter().any(|(k, _)| k == a))
        .collect();
    results.push((
        "all_recorded".into(),
        verdict(!missing.is_empty(), &format!("not recorded: {missing:?}")),
    ));
    results
}

/// Panics with every attempt that got through.
fn assert_all_failed(mode: &str, results: &[(String, String)]) {
    let escaped: Vec<String> = results
        .iter()
        .filter(|(_, v)| v != "ok")
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    assert!(
        escaped.is_empty(),
        "{mode}: RUN got out of its stage root:\n{}",
        escaped.join("\n")
    );
    for attempt in ATTEMPTS {
        let recorded = results.iter().any(|(k, _)| k == attempt);
        assert!(
            recorded || (attempt == "ptrace" && std::env::consts::ARCH != "x86_64"),
            "{mode}: {attempt} was not tried"
        );
    }
}

#[test]
fn run_cannot_escape_in_chroot_mode_on_an_overlay() {
    let results = attempt_escapes(Mode::Root(&[]));
    assert_all_failed("chroot (default as root)", &results);
}

#[test]
fn run_cannot_escape_in_chroot_mode_on_the_stage_root() {
    let results = attempt_escapes(Mode::Root(&["--run-overlay=false"]));
    assert_all_failed("chroot, --run-overlay=false", &results);
}

#[test]
fn run_cannot_escape_in_rootless_mode() {
    let results = attempt_escapes(Mode::Rootless);
    assert_all_failed("rootless as kiln-test", &results);
}

/// A RUN on the host network (`escape/forwarder.pl`) asks every listening loopback port, with
/// the registry's password but no client certificate, for an image of a registry that wants
/// one: kiln's forwarder to that registry must not hand it over.
#[test]
fn run_cannot_borrow_kilns_client_certificate() {
    use kiln_tests::SecureRegistry;
    require_root("chroot isolation");
    kiln_bin();
    let reg = SecureRegistry::start_mutual_tls("mtls-user", &format!("pw-{}", unique_token()));
    let host = reg.host().to_string();
    let (cert, key) = reg.client_cert();
    let client_flag = format!("{host}={},{}", cert.display(), key.display());
    let scratch = Scratch::new();
    let config =
        serde_json::json!({"auths": {&host: {"username": reg.user, "password": reg.password}}});
    let config_dir = kiln_tests::docker_config(&scratch.join("docker"), &config);
    let probe = reg.reference("mtls/probe:1");
    scratch.write("ctx/probe.txt", "probe\n");
    scratch.write("ctx/forwarder.pl", include_str!("escape/forwarder.pl"));
    let with_cert = |build: kiln_tests::Build| {
        build
            .arg("--registry-certificate")
            .arg(reg.certificate_flag())
            .arg("--registry-client-cert")
            .arg(&client_flag)
            .env("DOCKER_CONFIG", &config_dir)
    };
    with_cert(scratch.build("FROM scratch\nCOPY probe.txt /probe.txt\n"))
        .destination(&probe)
        .run_ok();
    // the RUN comes after the client-certificate registry was read from (COPY --from)
    let registry = Registry::shared();
    let base = debian_image(&registry);
    let layout = scratch.join("out");
    let image = with_cert(scratch.build(&format!(
        "FROM {probe} AS probe\n\
         FROM {base}\n\
         ARG REG CREDS\n\
         COPY --from=probe /probe.txt /probe.txt\n\
         COPY forwarder.pl /forwarder.pl\n\
         RUN --network=host AUTH=$(printf %s \"$CREDS\" | base64 -w0) perl /forwarder.pl > /forwarder\n"
    )))
    .arg("--no-push")
    .arg("--oci-layout-path")
    .arg(&layout)
    .arg("--build-arg")
    .arg(format!("REG={host}"))
    .arg("--build-arg")
    .arg(format!("CREDS={}:{}", reg.user, reg.password));
    image.run_ok();
    let image = umoci_unpack(&format!("oci:{}:latest", layout.display()));
    assert_eq!(image.read("probe.txt"), "probe\n");
    let answered = image.read("forwarder");
    assert!(
        answered.is_empty(),
        "a RUN fetched from the client-certificate registry through kiln's forwarder:\n{answered}"
    );
}
