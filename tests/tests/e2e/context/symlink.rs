//! Symlinks in the build context must not pull host files into the image.
//!
//! `secret-link -> /etc/kiln-secret-<token>` (a real host file) and
//! `rel-link -> ../outside-secret` (a file beside the context) are COPYed by name: kiln
//! either refuses with an error naming the link, or resolves them inside the context the
//! way Docker does — never with the host file's bytes. Copying the whole context keeps
//! both links as links.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use kiln_tests::{
    assert_not_in_registry, busybox_image, kiln_bin, require_root, umoci_unpack, unique_token,
    Registry, Scratch, Unpacked,
};

/// A host file that exists for the duration of a test.
struct HostFile(PathBuf);

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Every regular file in the unpacked image whose bytes contain `needle`.
fn files_containing(image: &Unpacked, needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &[u8], hits: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                walk(&path, needle, hits);
            } else if kind.is_file() {
                let bytes = fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path);
                }
            }
        }
    }
    let mut hits = Vec::new();
    walk(&image.rootfs, needle.as_bytes(), &mut hits);
    hits
}

struct Setup {
    registry: std::sync::Arc<Registry>,
    base: String,
    scratch: Scratch,
    token: String,
    _secret: HostFile,
}

/// The context with both links, the host secret and the file beside the context.
fn setup() -> Setup {
    kiln_bin();
    require_root("the secret is written to /etc");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let token = unique_token();
    let secret = PathBuf::from(format!("/etc/kiln-secret-{token}"));
    fs::write(&secret, format!("host secret {token}\n"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", secret.display()));
    let secret = HostFile(secret);
    scratch.write("outside-secret", &format!("outside secret {token}\n"));
    scratch.write("ctx/plain.txt", "plain\n");
    for (target, link) in [
        (secret.0.as_path(), "ctx/secret-link"),
        (Path::new("../outside-secret"), "ctx/rel-link"),
    ] {
        symlink(target, scratch.join(link)).unwrap_or_else(|e| panic!("{link}: {e}"));
    }
    Setup {
        registry,
        base,
        scratch,
        token,
        _secret: secret,
    }
}

/// `COPY <link> <dest>`: refused naming the link, or built without the secret's bytes.
fn copy_link_by_name(link: &str, dest: &str) {
    let s = setup();
    let destination = s.registry.reference(&format!("e2e/ctx-{link}:latest"));
    let dockerfile = format!("FROM {}\nCOPY {link} {dest}\n", s.base);
    let out = s.scratch.build(&dockerfile).destination(&destination).run();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().is_some(), "kiln died: {}", out.status);
        assert!(
            stderr.contains(link),
            "kiln refused COPY {link} without naming it:\n{stderr}"
        );
        assert_not_in_registry(&destination);
        return;
    }
    let image = umoci_unpack(&destination);
    let leaked = files_containing(&image, &s.token);
    assert!(
        leaked.is_empty(),
        "secret content copied into the image: {leaked:?}"
    );
}

#[test]
fn absolute_link_to_a_host_file_is_not_followed_out() {
    copy_link_by_name("secret-link", "/a");
}

#[test]
fn relative_link_out_of_the_context_is_not_followed_out() {
    copy_link_by_name("rel-link", "/b");
}

#[test]
fn copying_the_context_keeps_links_as_links() {
    let s = setup();
    let dockerfile = format!("FROM {}\nCOPY . /ctx/\n", s.base);
    let image = s
        .scratch
        .build(&dockerfile)
        .push_and_unpack(&s.registry.reference("e2e/ctx-all:latest"));
    assert_eq!(image.read("ctx/plain.txt"), "plain\n");
    assert_eq!(
        fs::read_link(image.path("ctx/secret-link")).expect("secret-link kept as a symlink"),
        Path::new(&format!("/etc/kiln-secret-{}", s.token))
    );
    assert_eq!(
        fs::read_link(image.path("ctx/rel-link")).expect("rel-link kept as a symlink"),
        Path::new("../outside-secret")
    );
    let leaked = files_containing(&image, &s.token);
    assert!(
        leaked.is_empty(),
        "secret content copied into the image: {leaked:?}"
    );
}
