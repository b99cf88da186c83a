//! Every fidelity rule of a layer, checked by a reader kiln did not write: Python's
//! `tarfile` reads the layer kiln wrote from a real directory (gzip directly; zstd after
//! kiln's own decoder turned it back into a plain tar). Needs root (device nodes, large
//! owners, `security.capability`) and python3.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::{BlobStore, Codec, Compression, LayerFormat, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::rootfs::Root;
use crate::snapshot::{Ignore, Index, SnapshotMode};

/// One tar member as Python sees it.
#[derive(Debug, Clone)]
struct Member {
    name: Vec<u8>,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Vec<u8>,
    mtime: String,
    dev: (u32, u32),
    pax: BTreeMap<String, Vec<u8>>,
}

const READER: &str = r#"
import sys, tarfile, binascii
h = lambda b: binascii.hexlify(b).decode()
enc = lambda s: s.encode("utf-8", "surrogateescape")
with tarfile.open(sys.argv[1], encoding="utf-8", errors="surrogateescape") as t:
    for m in t:
        pax = ",".join(k + "=" + h(enc(v)) for k, v in sorted(m.pax_headers.items()))
        print("\t".join([h(enc(m.name)), m.type.decode(), "%o" % m.mode, str(m.uid), str(m.gid),
                         h(enc(m.linkname)), repr(m.mtime), str(m.devmajor), str(m.devminor), pax]))
"#;

fn python_members(tar: &Path) -> Vec<Member> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(READER)
        .arg(tar)
        .output()
        .unwrap_or_else(|e| panic!("python3 (Debian package python3) is needed: {e}"));
    assert!(
        out.status.success(),
        "python3 tarfile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unhex = |s: &str| hex::decode(s).unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Member {
                name: unhex(f[0]),
                kind: f[1].chars().next().unwrap_or('0'),
                mode: u32::from_str_radix(f[2], 8).unwrap(),
                uid: f[3].parse().unwrap(),
                gid: f[4].parse().unwrap(),
                link: unhex(f[5]),
                mtime: f[6].to_string(),
                dev: (f[7].parse().unwrap(), f[8].parse().unwrap()),
                pax: f[9]
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), unhex(v))
                    })
                    .collect(),
            }
        })
        .collect()
}

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A capability set as `setcap cap_net_bind_service=+ep` writes it (VFS_CAP_REVISION_2).
const CAP_NET_BIND_SERVICE: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

#[test]
fn every_rule_as_an_independent_reader_sees_it() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: device nodes, owners beyond 2^21, security.capability"
    );
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("root");
    let p = |rel: &str| r.join(rel);
    for d in ["opq/sub", "wh", "tc/d2f", "tc/d2l", "keep"] {
        fs::create_dir_all(p(d)).unwrap();
    }
    for f in [
        "opq/sub/f",
        "opq/old",
        "wh/gone",
        "wh/stay",
        "tc/f2d",
        "tc/f2l",
        "keep/x",
    ] {
        fs::write(p(f), "base").unwrap();
    }
    symlink("/x", p("tc/l2f")).unwrap();
    symlink("/x", p("tc/l2d")).unwrap();
    let before = Index::scan(&r, &Ignore::default(), None).unwrap();

    // opaque dir, whiteout, every type change
    // (made before the old one goes, so it cannot get the old inode number back)
    fs::create_dir(p("opq.next")).unwrap();
    fs::write(p("opq.next/new"), "new").unwrap();
    fs::remove_dir_all(p("opq")).unwrap();
    fs::rename(p("opq.next"), p("opq")).unwrap();
    fs::remove_file(p("wh/gone")).unwrap();
    fs::remove_dir(p("tc/d2f")).unwrap();
    fs::write(p("tc/d2f"), "now a file").unwrap();
    fs::remove_dir(p("tc/d2l")).unwrap();
    symlink("target", p("tc/d2l")).unwrap();
    fs::remove_file(p("tc/f2d")).unwrap();
    fs::create_dir(p("tc/f2d")).unwrap();
    fs::remove_file(p("tc/f2l")).unwrap();
    symlink("t", p("tc/f2l")).unwrap();
    fs::remove_file(p("tc/l2f")).unwrap();
    fs::write(p("tc/l2f"), "file").unwrap();
    fs::remove_file(p("tc/l2d")).unwrap();
    fs::create_dir(p("tc/l2d")).unwrap();
    // hardlinks, special bits, nodes, a socket
    fs::create_dir_all(p("hl/a")).unwrap();
    fs::write(p("hl/a/orig"), "shared").unwrap();
    fs::hard_link(p("hl/a/orig"), p("hl/link")).unwrap();
    fs::create_dir(p("bits")).unwrap();
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2755)] {
        fs::write(p(&format!("bits/{name}")), "x").unwrap();
        set_mode(&p(&format!("bits/{name}")), mode);
    }
    fs::create_dir(p("bits/sticky")).unwrap();
    set_mode(&p("bits/sticky"), 0o1777);
    fs::create_dir(p("nodes")).unwrap();
    let cwd = rustix::fs::CWD;
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(
        cwd,
        p("nodes/null"),
        rustix::fs::FileType::CharacterDevice,
        mode,
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        cwd,
        p("nodes/loop"),
        rustix::fs::FileType::BlockDevice,
        mode,
        rustix::fs::makedev(7, 200),
    )
    .unwrap();
    rustix::fs::mknodat(cwd, p("nodes/fifo"), rustix::fs::FileType::Fifo, mode, 0).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(p("nodes/sock")).unwrap();
    // long names and link targets, large owners, sub-second mtimes, a non-UTF-8 name
    let long_dir = "d".repeat(120);
    let long_file = format!("long/{long_dir}/{}", "f".repeat(120));
    fs::create_dir_all(p(&format!("long/{long_dir}"))).unwrap();
    fs::write(p(&long_file), "long").unwrap();
    let long_target = format!("/{}", "t".repeat(150));
    symlink(&long_target, p("long/link")).unwrap();
    fs::hard_link(p(&long_file), p("long/hard")).unwrap();
    fs::write(p("ids"), "ids").unwrap();
    std::os::unix::fs::lchown(p("ids"), Some(3_000_000_000), Some(3_000_000_001)).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 250_000_000);
    fs::File::options()
        .write(true)
        .open(p("ids"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(r.join(odd), "odd").unwrap();
    // xattrs: a file capability and a value larger than a small buffer
    fs::write(p("cap"), "cap").unwrap();
    rustix::fs::lsetxattr(
        p("cap"),
        "security.capability",
        &CAP_NET_BIND_SERVICE,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let big = vec![b'v'; 3000];
    rustix::fs::lsetxattr(p("cap"), "user.big", &big, rustix::fs::XattrFlags::empty()).unwrap();

    let after = Index::scan(&r, &Ignore::default(), Some(&before)).unwrap();
    let changes = before.diff(&after, SnapshotMode::Full);
    let store = BlobStore::open(&tmp.path().join("blobs")).unwrap();
    let root = Root::open(&r).unwrap();
    for (compression, media_type) in [
        (Compression::Gzip, OCI_LAYER_GZIP),
        (Compression::Zstd, OCI_LAYER_ZSTD),
    ] {
        let format = LayerFormat {
            media_type: media_type.to_string(),
            codec: Codec {
                compression,
                level: compression.default_level(),
            },
            mtime_clamp: None,
            shown_as: None,
        };
        let blob = super::write_layer(&root, &changes, &store, &format).unwrap();
        let tar_path = match compression {
            Compression::Gzip => blob.path.clone(),
            Compression::Zstd => {
                let plain = tmp.path().join("layer.tar");
                let mut out = fs::File::create(&plain).unwrap();
                let file = fs::File::open(&blob.path).unwrap();
                let mut dec = super::compress::decompress(file).unwrap();
                std::io::copy(&mut dec, &mut out).unwrap();
                plain
            }
        };
        check(&python_members(&tar_path), &long_file, &long_target, &big);
    }
}

fn check(members: &[Member], long_file: &str, long_target: &str, big: &[u8]) {
    let by_name: BTreeMap<Vec<u8>, &Member> = members.iter().map(|m| (m.name.clone(), m)).collect();
    let get = |name: &str| -> &Member {
        by_name
            .get(name.as_bytes())
            .unwrap_or_else(|| panic!("{name} missing from {:?}", names(members)))
    };
    let absent = |name: &str| assert!(!by_name.contains_key(name.as_bytes()), "{name} present");
    // a replaced directory: the dir, its opaque marker, its new content; nothing of the old
    let order = names(members);
    let at = |n: &str| order.iter().position(|x| x == n).unwrap_or(usize::MAX);
    assert_eq!(at("opq") + 1, at("opq/.wh..wh..opq"), "{order:?}");
    assert!(at("opq/.wh..wh..opq") < at("opq/new"), "{order:?}");
    absent("opq/old");
    absent("opq/.wh.old");
    absent("opq/sub/f");
    // whiteout of a deleted file, not of what stayed
    assert_eq!(get("wh/.wh.gone").kind, '0');
    absent("wh/stay");
    absent("keep/x");
    // type changes
    for (name, kind, link) in [
        ("tc/d2f", '0', ""),
        ("tc/d2l", '2', "target"),
        ("tc/f2d", '5', ""),
        ("tc/f2l", '2', "t"),
        ("tc/l2f", '0', ""),
        ("tc/l2d", '5', ""),
    ] {
        let m = get(name);
        assert_eq!(
            (m.kind, m.link.as_slice()),
            (kind, link.as_bytes()),
            "{name}"
        );
    }
    // hardlinks name the first path, relative to the root
    assert_eq!(get("hl/a/orig").kind, '0');
    let hl = get("hl/link");
    assert_eq!((hl.kind, hl.link.as_slice()), ('1', &b"hl/a/orig"[..]));
    // special bits
    assert_eq!(get("bits/setuid").mode, 0o4755);
    assert_eq!(get("bits/setgid").mode, 0o2755);
    assert_eq!(get("bits/sticky").mode, 0o1777);
    // nodes and FIFOs kept, sockets skipped
    assert_eq!(
        (get("nodes/null").kind, get("nodes/null").dev),
        ('3', (1, 3))
    );
    assert_eq!(
        (get("nodes/loop").kind, get("nodes/loop").dev),
        ('4', (7, 200))
    );
    assert_eq!(get("nodes/fifo").kind, '6');
    absent("nodes/sock");
    // long names and link targets in PAX records
    let long = get(long_file);
    assert_eq!(
        long.pax.get("path").map(Vec::as_slice),
        Some(long_file.as_bytes())
    );
    let link = get("long/link");
    assert_eq!(link.link, long_target.as_bytes());
    assert_eq!(
        link.pax.get("linkpath").map(Vec::as_slice),
        Some(long_target.as_bytes())
    );
    let hard = get("long/hard");
    assert_eq!(
        (hard.kind, hard.link.as_slice()),
        ('1', long_file.as_bytes())
    );
    // large owners, sub-second mtime
    let ids = get("ids");
    assert_eq!((ids.uid, ids.gid), (3_000_000_000, 3_000_000_001));
    assert_eq!(
        ids.pax.get("uid").map(Vec::as_slice),
        Some(&b"3000000000"[..])
    );
    assert_eq!(ids.mtime, "1700000000.25");
    // non-UTF-8 names byte for byte
    assert_eq!(get_bytes(&by_name, b"bad\xffname").kind, '0');
    // xattrs
    let cap = get("cap");
    assert_eq!(
        cap.pax
            .get("SCHILY.xattr.security.capability")
            .map(Vec::as_slice),
        Some(&CAP_NET_BIND_SERVICE[..])
    );
    assert_eq!(
        cap.pax.get("SCHILY.xattr.user.big").map(Vec::as_slice),
        Some(big)
    );
    // every parent comes before its children, and the order is the sorted path order
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for m in members {
        let name = m.name.strip_suffix(b"/").unwrap_or(&m.name);
        if let Some(cut) = name.iter().rposition(|b| *b == b'/') {
            let parent = &name[..cut];
            assert!(
                seen.iter().any(|s| s == parent),
                "{} comes before its parent",
                String::from_utf8_lossy(name)
            );
        }
        seen.push(name.to_vec());
    }
    let logical: Vec<Vec<u8>> = members.iter().map(|m| logical_path(&m.name)).collect();
    let mut sorted = logical.clone();
    sorted.sort();
    assert_eq!(logical, sorted, "entries are not in path order");
}

fn get_bytes<'a>(by_name: &BTreeMap<Vec<u8>, &'a Member>, name: &[u8]) -> &'a Member {
    by_name.get(name).expect("non-UTF-8 name missing")
}

/// The path a member stands for: a whiteout by the name it deletes, a marker by its dir.
fn logical_path(name: &[u8]) -> Vec<u8> {
    let name = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match name.iter().rposition(|b| *b == b'/') {
        Some(i) => (&name[..i + 1], &name[i + 1..]),
        None => (&b""[..], name),
    };
    if base == b".wh..wh..opq" {
        // right after its directory
        return [dir.strip_suffix(b"/").unwrap_or(dir), b"\x00"].concat();
    }
    match base.strip_prefix(b".wh.") {
        Some(victim) => [dir, victim].concat(),
        None => name.to_vec(),
    }
}

fn names(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .map(|m| String::from_utf8_lossy(m.name.strip_suffix(b"/").unwrap_or(&m.name)).into_owned())
        .collect()
}
