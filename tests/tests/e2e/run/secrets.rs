//! `--secret` with `RUN --mount=type=secret`: the command reads it (as a file at the default
//! and a chosen target, and as an env variable), and the value appears nowhere else — not
//! in any layer (decompressed), the config, the history, the manifest, nor a line of kiln's
//! output at trace level. The Dockerfile itself names only the secret's sha256.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use kiln_tests::{busybox_image, kiln_bin, require_root, unique_token, Registry, Scratch};

/// Every file under `dir`, gunzipped where it is gzip.
fn contents_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            contents_under(&path, out);
            continue;
        }
        let raw = fs::read(&path).unwrap();
        if raw.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut plain)
                .unwrap();
            out.push((format!("{} (gunzipped)", path.display()), plain));
        }
        out.push((path.display().to_string(), raw));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_secret_reaches_run_and_nothing_else() {
    require_root("mounts in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let secret = format!("s3cr3t-{}", unique_token());
    let file = scratch.write("secret.txt", &secret);
    let destination = registry.reference("e2e/secrets:latest");
    let layout = scratch.join("layout");
    let out = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN --mount=type=secret,id=tok \
                 test \"$(sha256sum < /run/secrets/tok)\" = \"{sum}  -\" && echo file-ok > /file-ok\n\
             RUN --mount=type=secret,id=tok,target=/etc/app/token,mode=0440,uid=65534 \
                 stat -c '%a %u' /etc/app/token > /target-meta; \
                 test \"$(sha256sum < /etc/app/token)\" = \"{sum}  -\" && echo target-ok > /target-ok\n\
             RUN --mount=type=secret,id=tok,env=TOKEN \
                 test \"$(printf %s \"$TOKEN\" | sha256sum)\" = \"{sum}  -\" && test ! -e /run/secrets/tok \
                 && echo env-ok > /env-ok\n\
             RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n",
            sum = hex::encode(Sha256::digest(secret.as_bytes()))
        ))
        .destination(&destination)
        .arg("--secret")
        .arg(format!("id=tok,src={}", file.display()))
        .arg("--oci-layout-path")
        .arg(&layout)
        .arg("--verbosity")
        .arg("trace")
        .arg("--log-format")
        .arg("text")
        .run_ok();

    let mut everything = Vec::new();
    contents_under(&layout, &mut everything);
    let layers = everything.len();
    assert!(layers > 4, "the layout holds too little: {layers} files");
    let image = kiln_tests::umoci_unpack(&format!("oci:{}:latest", layout.display()));
    for ok in ["file-ok", "target-ok", "env-ok"] {
        assert_eq!(image.read(ok), format!("{ok}\n"));
    }
    assert_eq!(image.read("target-meta"), "440 65534\n");
    image.assert_absent(&["run", "etc/app"]);
    everything.push(("kiln stdout".into(), out.stdout.clone()));
    everything.push(("kiln stderr".into(), out.stderr.clone()));
    let config = kiln_tests::skopeo_config(&destination);
    everything.push(("config (registry)".into(), config.to_string().into_bytes()));
    // whatever the build left in its kiln dir (caches, compiled guest)
    contents_under(&scratch.kiln_dir(), &mut everything);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().count() > 10,
        "trace output expected:\n{stderr}"
    );
    for (what, bytes) in &everything {
        assert!(
            !contains(bytes, secret.as_bytes()),
            "the secret appears in {what}"
        );
    }
}
