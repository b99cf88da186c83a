//! Extended attributes as a layer carries them: read from a file on disk (any size) and named
//! in tar as PAX records `SCHILY.xattr.<name>`, the way Docker and Go's writer spell them.
//!
//! Both directions meet here: the writer turns a file's xattrs into records, the extractor
//! turns records back into names. Setting an xattr inside a root is `rootfs::Root`'s job.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The PAX key prefix of an extended attribute.
pub const PAX_PREFIX: &str = "SCHILY.xattr.";

/// The xattr a PAX key names, if it names one.
pub fn name_of(pax_key: &str) -> Option<&str> {
    pax_key.strip_prefix(PAX_PREFIX)
}

/// The PAX records for every xattr of `host` (the path itself, never a symlink's target),
/// sorted by name; none when the filesystem keeps no xattrs.
pub fn records(host: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut records = Vec::new();
    let names = match xattr_read(|buf| rustix::fs::llistxattr(host, buf))? {
        Some(names) => names,
        None => return Ok(records),
    };
    let mut keys: Vec<&[u8]> = names.split(|b| *b == 0).filter(|k| !k.is_empty()).collect();
    keys.sort_unstable();
    for key in keys {
        let key = OsStr::from_bytes(key);
        if let Some(value) = xattr_read(|buf| rustix::fs::lgetxattr(host, key, buf))? {
            let key = String::from_utf8_lossy(key.as_bytes()).into_owned();
            records.push((format!("{PAX_PREFIX}{key}"), value));
        }
    }
    Ok(records)
}

/// Reads a list or value of any size (the kernel caps both at 64 KiB): starts small and
/// grows on ERANGE. `None` when the filesystem has no xattrs or the attribute is gone.
pub(crate) fn xattr_read(
    mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0u8; size];
        match call(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) if size < 1 << 20 => size *= 4,
            Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_keys_name_xattrs() {
        for (key, want) in [
            (
                "SCHILY.xattr.security.capability",
                Some("security.capability"),
            ),
            ("SCHILY.xattr.user.k", Some("user.k")),
            ("mtime", None),
            ("LIBARCHIVE.xattr.user.k", None),
        ] {
            assert_eq!(name_of(key), want, "{key}");
        }
    }
}
