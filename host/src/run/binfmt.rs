//! Whether this machine can run another platform's programs: the kernel's binfmt_misc
//! handlers (Debian's `qemu-user-static` registers `qemu-aarch64` and friends with the `F`
//! flag, so the interpreter is found inside a stage root too). A RUN for a foreign platform
//! is checked here before it starts; what runs it is still the runner's.
//!
//! A handler is read from its file in the binfmt_misc directory (`enabled`, `offset`,
//! `magic`, `mask`) and matched against the ELF header a program of that platform starts
//! with. `KILN_BINFMT_MISC_DIR` names another directory than `/proc/sys/fs/binfmt_misc`
//! (for tests that must see no handler without unregistering the machine's).

use std::path::{Path, PathBuf};

use crate::registry::Platform;

/// Where the kernel shows binfmt_misc handlers.
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// The environment variable that points the check at another directory.
pub const BINFMT_MISC_DIR_ENV: &str = "KILN_BINFMT_MISC_DIR";
/// The Debian package that registers the emulators.
pub const EMULATOR_PACKAGE: &str = "qemu-user-static";

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error(
        "Dockerfile:{line}: RUN for {platform} needs an emulator: no enabled binfmt_misc handler \
         for {architecture} programs in {dir}; install Debian's {EMULATOR_PACKAGE} (it \
         registers qemu-user handlers) and make sure binfmt_misc is mounted (mount -t \
         binfmt_misc binfmt_misc {BINFMT_MISC_DIR})"
    )]
    NoHandler {
        line: usize,
        platform: String,
        architecture: String,
        dir: String,
    },
    #[error(
        "Dockerfile:{line}: RUN for {platform}: kiln does not know the ELF header of \
         {architecture} programs, so it cannot tell whether an emulator runs them"
    )]
    UnknownArchitecture {
        line: usize,
        platform: String,
        architecture: String,
    },
}

/// Whether programs of `platform` run on this machine without an emulator.
pub fn is_native(platform: &Platform) -> bool {
    let host = Platform::host();
    platform.os == host.os
        && (platform.architecture == host.architecture
            || (host.architecture == "amd64" && platform.architecture == "386"))
}

/// Checks, for the RUN on Dockerfile line `line`, that programs of `platform` can run here:
/// natively, or through an enabled binfmt_misc handler.
pub fn require_runnable(platform: &Platform, line: usize) -> Result<(), BinfmtError> {
    if is_native(platform) {
        return Ok(());
    }
    let Some(header) = elf_header(&platform.architecture) else {
        return Err(BinfmtError::UnknownArchitecture {
            line,
            platform: platform.to_string(),
            architecture: platform.architecture.clone(),
        });
    };
    let dir = handler_dir();
    if handlers_enabled(&dir) && has_handler(&dir, &header) {
        return Ok(());
    }
    Err(BinfmtError::NoHandler {
        line,
        platform: platform.to_string(),
        architecture: platform.architecture.clone(),
        dir: dir.display().to_string(),
    })
}

fn handler_dir() -> PathBuf {
    std::env::var_os(BINFMT_MISC_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(BINFMT_MISC_DIR), PathBuf::from)
}

/// binfmt_misc as a whole is on (its `status` file says `enabled`).
fn handlers_enabled(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() == "enabled")
}

/// Whether an enabled handler in `dir` matches a program starting with `header`.
fn has_handler(dir: &Path, header: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        if name == "register" || name == "status" {
            return false;
        }
        std::fs::read_to_string(entry.path()).is_ok_and(|text| handler_matches(&text, header))
    })
}

/// Whether the handler described by `text` (a binfmt_misc entry file) is enabled and its
/// magic, under its mask and at its offset, matches `header`.
fn handler_matches(text: &str, header: &[u8]) -> bool {
    let mut enabled = false;
    let (mut offset, mut magic, mut mask) = (0usize, None, None);
    for line in text.lines() {
        match line.split_once(' ') {
            None if line.trim() == "enabled" => enabled = true,
            Some(("offset", v)) => offset = v.trim().parse().unwrap_or(usize::MAX),
            Some(("magic", v)) => magic = hex_bytes(v.trim()),
            Some(("mask", v)) => mask = hex_bytes(v.trim()),
            _ => {}
        }
    }
    let Some(magic) = magic else {
        return false; // an extension handler, not a magic one
    };
    let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
    enabled
        && header.len() >= offset.saturating_add(magic.len())
        && magic.iter().enumerate().all(|(i, m)| {
            let k = mask.get(i).copied().unwrap_or(0xff);
            header[offset + i] & k == m & k
        })
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The first 20 bytes of an executable of OCI architecture `architecture`: ELF ident
/// (class, byte order, version), `e_type` EXEC and `e_machine`.
fn elf_header(architecture: &str) -> Option<Vec<u8>> {
    // (64-bit, big-endian, e_machine)
    let (wide, big, machine): (bool, bool, u16) = match architecture {
        "amd64" => (true, false, 62),
        "arm64" => (true, false, 183),
        "arm" => (false, false, 40),
        "386" => (false, false, 3),
        "ppc64le" => (true, false, 21),
        "s390x" => (true, true, 22),
        "riscv64" => (true, false, 243),
        "mips64le" => (true, false, 8),
        "loong64" => (true, false, 258),
        _ => return None,
    };
    let mut header = vec![0x7f, b'E', b'L', b'F', if wide { 2 } else { 1 }];
    header.push(if big { 2 } else { 1 });
    header.push(1); // EV_CURRENT
    header.extend([0u8; 9]);
    let (e_type, e_machine) = if big {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    header.extend(e_type);
    header.extend(e_machine);
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn qemu_handlers_match_their_architecture_only() {
        let arm64 = elf_header("arm64").unwrap();
        let arm = elf_header("arm").unwrap();
        assert!(handler_matches(QEMU_AARCH64, &arm64));
        assert!(!handler_matches(QEMU_AARCH64, &arm));
        let disabled = QEMU_AARCH64.replacen("enabled", "disabled", 1);
        assert!(!handler_matches(&disabled, &arm64));
        let arm_handler = "enabled\noffset 0\nmagic 7f454c4601010100000000000000000002002800\n\
            mask ffffffffffffff00fffffffffffffffffeffffff\n";
        assert!(handler_matches(arm_handler, &arm));
        assert!(!handler_matches("enabled\nextension .exe\n", &arm64));
    }

    #[test]
    fn a_directory_without_handlers_is_refused_naming_the_package() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        assert!(!has_handler(dir.path(), &elf_header("arm64").unwrap()));
        std::fs::write(dir.path().join("qemu-aarch64"), QEMU_AARCH64).unwrap();
        assert!(has_handler(dir.path(), &elf_header("arm64").unwrap()));
        let e = BinfmtError::NoHandler {
            line: 3,
            platform: "linux/arm64".into(),
            architecture: "arm64".into(),
            dir: dir.path().display().to_string(),
        }
        .to_string();
        assert!(e.starts_with("Dockerfile:3: RUN for linux/arm64"), "{e}");
        assert!(e.contains("qemu-user-static"), "{e}");
    }
}
