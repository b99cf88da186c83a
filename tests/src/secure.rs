//! Registries that need credentials and speak TLS: a Debian `docker-registry` with htpasswd
//! Basic auth behind TLS, its certificates issued by a CA the fixture makes with openssl.
//!
//! Owns the certificates (a CA and a server certificate for the machine's host name), the
//! htpasswd file, and Docker `config.json` files and credential-helper scripts pointing at
//! such a registry. The registry process itself is `registry.rs`'s [`Registry`].

use std::fs;
use std::net::ToSocketAddrs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::registry::Registry;
use crate::tools::{require, run_checked};

/// A registry with TLS from a test CA and htpasswd Basic auth.
pub struct SecureRegistry {
    pub registry: Registry,
    /// The CA certificate (PEM) that issued the registry's certificate.
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
    dir: TempDir,
}

/// The machine's host name and the IPv4 address it resolves to: a name kiln does not treat
/// as local, so it speaks HTTPS to it, while the address is still this machine.
pub fn tls_host_name() -> (String, String) {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    assert!(!name.is_empty(), "this machine has no host name");
    let ip = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()))
        .unwrap_or_else(|| {
            panic!("host name {name} does not resolve to an IPv4 address (add it to /etc/hosts)")
        })
        .ip()
        .to_string();
    (name, ip)
}

impl SecureRegistry {
    /// Starts a registry at `<hostname>:PORT` serving TLS with a fresh CA and accepting
    /// `user`/`password` (bcrypt htpasswd).
    pub fn start(user: &str, password: &str) -> SecureRegistry {
        let (name, ip) = tls_host_name();
        SecureRegistry::start_with(user, password, false, &name, &ip)
    }

    /// As [`SecureRegistry::start`], at `127.0.0.1:PORT` (its certificate for the IP
    /// address): a loopback registry that speaks only TLS.
    pub fn start_loopback(user: &str, password: &str) -> SecureRegistry {
        SecureRegistry::start_with(user, password, false, "127.0.0.1", "127.0.0.1")
    }

    /// As [`SecureRegistry::start`], and the registry also demands a TLS client certificate
    /// issued by the same CA: [`SecureRegistry::client_cert`] is one.
    pub fn start_mutual_tls(user: &str, password: &str) -> SecureRegistry {
        let (name, ip) = tls_host_name();
        SecureRegistry::start_with(user, password, true, &name, &ip)
    }

    /// The client certificate and key (PEM) made by [`SecureRegistry::start_mutual_tls`].
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("client.crt"),
            self.dir.path().join("client.key"),
        )
    }

    fn start_with(
        user: &str,
        password: &str,
        client_certs: bool,
        name: &str,
        ip: &str,
    ) -> SecureRegistry {
        let openssl = require("openssl", "openssl");
        let htpasswd = require("htpasswd", "apache2-utils");
        let dir = tempfile::Builder::new()
            .prefix("kiln-secure-")
            .tempdir()
            .expect("secure registry dir");
        let d = dir.path();
        run_checked(
            Command::new(&openssl)
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=kiln test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(d.join("ca.key"))
                .arg("-out")
                .arg(d.join("ca.crt")),
        );
        issue(
            &openssl,
            d,
            "server",
            name,
            &format!("subjectAltName=DNS:{name},IP:{ip}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"),
        );
        if client_certs {
            issue(
                &openssl,
                d,
                "client",
                "kiln test client",
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
            );
        }
        let client_cas = if client_certs {
            format!("    clientcas:\n      - {}\n", d.join("ca.crt").display())
        } else {
            String::new()
        };
        let line = run_checked(Command::new(&htpasswd).args(["-Bbn", user, password]));
        fs::write(d.join("htpasswd"), line.trim()).expect("htpasswd file");
        let (crt, key, htp) = (
            d.join("server.crt"),
            d.join("server.key"),
            d.join("htpasswd"),
        );
        let registry = Registry::start_with(ip, name, &|_| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n{client_cas}auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                crt.display(),
                key.display(),
                htp.display()
            )
        });
        SecureRegistry {
            registry,
            ca: d.join("ca.crt"),
            user: user.to_string(),
            password: password.to_string(),
            dir,
        }
    }

    /// `<hostname>:PORT`.
    pub fn host(&self) -> &str {
        self.registry.host()
    }

    /// `<hostname>:PORT/<repo_and_tag>`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        self.registry.reference(repo_and_tag)
    }

    /// `--registry-certificate <host>=<ca.crt>`, ready to pass as one argument.
    pub fn certificate_flag(&self) -> String {
        format!("{}={}", self.host(), self.ca.display())
    }

    /// The fixture's own directory (certificates, htpasswd).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A test CA in `dir` (`ca.crt`) and a server certificate it issued for the IP address `ip`
/// (`server.crt`, `server.key`), for servers of any kind that speak TLS on loopback.
/// Returns the three paths (CA, certificate, key).
pub fn loopback_tls_files(dir: &Path, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require("openssl", "openssl");
    fs::create_dir_all(dir).expect("certificate dir");
    run_checked(
        Command::new(&openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=kiln test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.crt")),
    );
    issue(
        &openssl,
        dir,
        "server",
        ip,
        &format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"),
    );
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// Makes `<stem>.key` and `<stem>.crt` in `d`: a new key with the subject `CN=<common_name>`,
/// certified by the CA in `d` (`ca.crt`, `ca.key`) with the X.509 extensions in `extensions`.
fn issue(openssl: &Path, d: &Path, stem: &str, common_name: &str, extensions: &str) {
    run_checked(
        Command::new(openssl)
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .arg("-subj")
            .arg(format!("/CN={common_name}"))
            .arg("-keyout")
            .arg(d.join(format!("{stem}.key")))
            .arg("-out")
            .arg(d.join(format!("{stem}.csr"))),
    );
    let ext = d.join(format!("{stem}.ext"));
    fs::write(&ext, extensions).expect("extensions file");
    run_checked(
        Command::new(openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(d.join(format!("{stem}.csr")))
            .arg("-CA")
            .arg(d.join("ca.crt"))
            .arg("-CAkey")
            .arg(d.join("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(d.join(format!("{stem}.crt"))),
    );
}

/// Writes `config` as `<dir>/config.json` and returns `dir`, ready for `DOCKER_CONFIG`.
pub fn docker_config(dir: &Path, config: &serde_json::Value) -> PathBuf {
    fs::create_dir_all(dir).expect("docker config dir");
    fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
    dir.to_path_buf()
}

/// Writes an executable `docker-credential-<name>` into `bin_dir` that answers `get` for
/// `server` with `user`/`secret` and says "credentials not found" for anything else, as
/// Docker's helpers do. Each call is logged to `<bin_dir>/<name>.calls` (server names only).
pub fn credential_helper(bin_dir: &Path, name: &str, server: &str, user: &str, secret: &str) {
    fs::create_dir_all(bin_dir).expect("helper dir");
    let log = bin_dir.join(format!("{name}.calls"));
    let script = format!(
        r#"#!/bin/sh
[ "$1" = get ] || {{ echo "unsupported: $1" >&2; exit 1; }}
read -r server
echo "$server" >> '{log}'
if [ "$server" = '{server}' ]; then
  printf '{{"ServerURL":"%s","Username":"%s","Secret":"%s"}}\n' "$server" '{user}' '{secret}'
else
  echo "credentials not found in native keychain"
  exit 1
fi
"#,
        log = log.display()
    );
    let path = bin_dir.join(format!("docker-credential-{name}"));
    fs::write(&path, script).expect("helper script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod helper");
}
