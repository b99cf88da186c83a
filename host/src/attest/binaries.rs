//! What a binary says it was built from: Go's build information (the `.go.buildinfo` section,
//! `\xff Go buildinf:` followed by the Go version and the module list) and Rust's
//! `cargo auditable` data (the `.dep-v0` section, zlib-compressed JSON). Both are found by
//! the ELF section headers (32- and 64-bit, little-endian); no code in the binary runs.
//!
//! A Go binary lists its main module, its dependencies (each replaced by what really built
//! it: another module at its version, or a local directory, which keeps the module path and
//! is `(devel)` as Go calls unversioned code) and the standard library it was compiled with
//! (`stdlib` at the toolchain's version, as Go's vulnerability database names it). A Rust
//! binary lists the packages compiled into it: `cargo auditable` also records build-time
//! packages (build scripts, proc macros and their dependencies, `"kind": "build"`), which are
//! not in the binary and are left out; a missing `kind` means `runtime`.

use std::io::Read as _;

use super::package::{Ecosystem, Found};

/// The magic an executable file starts with.
pub(crate) const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const GO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Decompressed `cargo auditable` JSON above this is not read.
const AUDITABLE_LIMIT: u64 = 8 * 1024 * 1024;

/// The packages an ELF file's embedded build data names (none when it has none).
pub(crate) fn read(elf: &[u8]) -> Vec<Found> {
    let mut found = Vec::new();
    if let Some(info) = section(elf, ".go.buildinfo") {
        found.extend(go_modules(info));
    }
    if let Some(deps) = section(elf, ".dep-v0") {
        found.extend(cargo_packages(deps));
    }
    found
}

fn le(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(width)?)?;
    Some(
        b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
    )
}

/// The bytes of the section named `want`.
fn section<'a>(elf: &'a [u8], want: &str) -> Option<&'a [u8]> {
    if !elf.starts_with(ELF_MAGIC) || elf.get(5) != Some(&1) {
        return None;
    }
    let wide = elf.get(4) == Some(&2);
    let at = |n64: usize, n32: usize| if wide { n64 } else { n32 };
    let word = if wide { 8 } else { 4 };
    let shoff = le(elf, at(0x28, 0x20), word)? as usize;
    let shentsize = le(elf, at(0x3A, 0x2E), 2)? as usize;
    let shnum = le(elf, at(0x3C, 0x30), 2)? as usize;
    let shstrndx = le(elf, at(0x3E, 0x32), 2)? as usize;
    let header = |i: usize| -> Option<(usize, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = le(elf, h, 4)? as usize;
        let offset = le(elf, h + at(24, 16), word)? as usize;
        let size = le(elf, h + at(32, 20), word)? as usize;
        Some((name, offset, size))
    };
    let (_, str_off, str_size) = header(shstrndx)?;
    let names = elf.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum {
        let (name, offset, size) = header(i)?;
        let tail = names.get(name..)?;
        let end = tail.iter().position(|&b| b == 0)?;
        if &tail[..end] == want.as_bytes() {
            return elf.get(offset..offset.checked_add(size)?);
        }
    }
    None
}

/// A uvarint-prefixed string and what follows it.
fn varint_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut len, mut shift, mut used) = (0usize, 0u32, 0usize);
    for &b in bytes.iter().take(10) {
        used += 1;
        len |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            let rest = &bytes[used..];
            return Some((rest.get(..len)?, rest.get(len..)?));
        }
        shift += 7;
    }
    None
}

/// Go 1.18+ build info (inline strings, flag bit 2): the main module and its dependencies.
fn go_modules(info: &[u8]) -> Vec<Found> {
    if !info.starts_with(GO_MAGIC) || info.len() < 32 || info[15] & 2 == 0 {
        return Vec::new();
    }
    let Some((go_version, rest)) = varint_string(&info[32..]) else {
        return Vec::new();
    };
    let Some((mut modinfo, _)) = varint_string(rest) else {
        return Vec::new();
    };
    // the module list sits between two 16-byte sentinels
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    let text = String::from_utf8_lossy(modinfo);
    let mut found: Vec<Found> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let (name, version) = match fields.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..] => {
                (path.to_string(), version.to_string())
            }
            // a replacement: what was really built in place of the module above
            ["=>", path, rest @ ..] => match found.pop() {
                // a local directory: the module's own path, unversioned code
                Some(required) if is_local_path(path) => (required.name, DEVEL.to_string()),
                Some(_) => (
                    path.to_string(),
                    rest.first().copied().unwrap_or_default().to_string(),
                ),
                None => continue,
            },
            _ => continue,
        };
        found.push(Found {
            ecosystem: Ecosystem::Golang,
            name,
            version,
            arch: None,
        });
    }
    // the standard library compiled in, at the toolchain's version (`go1.22.1`; an
    // experiment suffix such as ` X:boringcrypto` is not part of it)
    let go_version = String::from_utf8_lossy(go_version);
    if let Some(version) = go_version.split_whitespace().next() {
        if version.starts_with("go") {
            found.push(Found {
                ecosystem: Ecosystem::Golang,
                name: GO_STDLIB.to_string(),
                version: version.to_string(),
                arch: None,
            });
        }
    }
    found
}

/// The name the Go standard library is listed under.
pub(crate) const GO_STDLIB: &str = "stdlib";
/// The version Go gives code that has none (the main module, a local replacement).
const DEVEL: &str = "(devel)";

/// Whether a replacement names a directory rather than a module (Go's rule: a path that
/// starts with `./`, `../` or `/`).
fn is_local_path(path: &str) -> bool {
    path.starts_with("./")
        || path.starts_with("../")
        || path.starts_with('/')
        || path == "."
        || path == ".."
}

/// `cargo auditable`'s package list.
fn cargo_packages(compressed: &[u8]) -> Vec<Found> {
    let mut json = Vec::new();
    let reader = flate2::read::ZlibDecoder::new(compressed).take(AUDITABLE_LIMIT);
    if std::io::BufReader::new(reader)
        .read_to_end(&mut json)
        .is_err()
    {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return Vec::new();
    };
    let packages = v.get("packages").and_then(|p| p.as_array());
    packages
        .into_iter()
        .flatten()
        // build-time packages are not compiled into the binary
        .filter(|p| p.get("kind").and_then(|k| k.as_str()) != Some("build"))
        .filter_map(|p| {
            Some(Found {
                ecosystem: Ecosystem::Cargo,
                name: p.get("name")?.as_str()?.to_string(),
                version: p.get("version")?.as_str()?.to_string(),
                arch: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A 64-bit little-endian ELF with the given sections (enough headers to find them).
    fn elf(sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut name_at = Vec::new();
        for (n, _) in sections {
            name_at.push(names.len());
            names.extend_from_slice(n.as_bytes());
            names.push(0);
        }
        let shstr_name = names.len();
        names.extend_from_slice(b".shstrtab\0");
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(ELF_MAGIC);
        out[4] = 2;
        out[5] = 1;
        let mut placed = Vec::new();
        for (_, data) in sections {
            placed.push((out.len(), data.len()));
            out.extend_from_slice(data);
        }
        let str_at = out.len();
        out.extend_from_slice(&names);
        let shoff = out.len();
        let mut headers = vec![(0usize, 0usize, 0usize)];
        for (i, (at, len)) in placed.iter().enumerate() {
            headers.push((name_at[i], *at, *len));
        }
        headers.push((shstr_name, str_at, names.len()));
        for (name, at, len) in &headers {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&(*name as u32).to_le_bytes());
            h[24..32].copy_from_slice(&(*at as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(*len as u64).to_le_bytes());
            out.extend_from_slice(&h);
        }
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        out[0x3C..0x3E].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        out[0x3E..0x40].copy_from_slice(&((headers.len() - 1) as u16).to_le_bytes());
        out
    }

    /// A Go 1.18+ `.go.buildinfo` section: the version and the module list, inline.
    fn go_buildinfo(go_version: &str, modules: &str) -> Vec<u8> {
        let modinfo = format!(
            "{}{modules}{}",
            "0".repeat(16),
            "\n".to_string() + &"1".repeat(15)
        );
        let mut info = GO_MAGIC.to_vec();
        info.extend_from_slice(&[8, 2]);
        info.resize(32, 0);
        for s in [go_version, modinfo.as_str()] {
            let mut len = s.len();
            while len >= 0x80 {
                info.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            info.push(len as u8);
            info.extend_from_slice(s.as_bytes());
        }
        info
    }

    fn listed(found: &[Found]) -> Vec<(&str, &str)> {
        found
            .iter()
            .map(|f| (f.name.as_str(), f.version.as_str()))
            .collect()
    }

    #[test]
    fn reads_go_build_info() {
        let info = go_buildinfo(
            "go1.22.1 X:boringcrypto",
            "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
             dep\tgolang.org/x/sys\tv0.1.0\th1:x=\n\
             dep\tgolang.org/x/net\tv0.2.0\th1:y=\n=>\texample.com/net-fork\tv0.2.1\th1:z=\n\
             dep\tgolang.org/x/text\tv0.3.0\n=>\t../text\t(devel)\t\n\
             build\tCGO_ENABLED=0\n",
        );
        let found = read(&elf(&[(".go.buildinfo", info)]));
        assert_eq!(
            listed(&found),
            [
                ("example.com/app", "(devel)"),
                ("golang.org/x/sys", "v0.1.0"),
                ("example.com/net-fork", "v0.2.1"),
                ("golang.org/x/text", "(devel)"),
                ("stdlib", "go1.22.1"),
            ]
        );
        // a binary built outside module mode names only its toolchain
        let info = go_buildinfo("go1.19.8", "path\texample.com/cmd\nbuild\t-compiler=gc\n");
        assert_eq!(
            listed(&read(&elf(&[(".go.buildinfo", info)]))),
            [("stdlib", "go1.19.8")]
        );
        // a replacement with nothing before it names nothing
        let info = go_buildinfo("go1.22.1", "=>\texample.com/x\tv1.0.0\t\n");
        assert_eq!(
            listed(&read(&elf(&[(".go.buildinfo", info)]))),
            [("stdlib", "go1.22.1")]
        );
    }

    #[test]
    fn reads_cargo_auditable() {
        let json = br#"{"packages":[
            {"name":"app","version":"0.1.0","source":"local","root":true,"dependencies":[1,2,3]},
            {"name":"serde","version":"1.0.200","source":"crates.io","dependencies":[2]},
            {"name":"serde_derive","version":"1.0.200","source":"crates.io","kind":"build"},
            {"name":"libc","version":"0.2.155","source":"crates.io","kind":"runtime"}
        ]}"#;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json).unwrap();
        let found = read(&elf(&[(".dep-v0", z.finish().unwrap())]));
        assert_eq!(
            listed(&found),
            [("app", "0.1.0"), ("serde", "1.0.200"), ("libc", "0.2.155")]
        );
        assert!(read(b"#!/bin/sh\n").is_empty());
    }
}
