//! The seccomp filter of a RUN: what Docker's default profile refuses, refused with EPERM.
//!
//! Docker's profile is an allow-list whose default is `EPERM`; what it leaves out (for a
//! process without CAP_SYS_ADMIN and friends) is the list here: mounts and the new mount API,
//! `pivot_root`, namespaces (`unshare`, `setns`, `clone` with a namespace flag), kernel modules
//! and `kexec`, the keyring, `bpf`, `ptrace` and cross-process memory, `open_by_handle_at`,
//! swap, reboot, clocks, quotas, accounting and the obsolete calls. `clone3` answers ENOSYS so
//! that C libraries fall back to `clone`, whose flags the filter can see. The program is
//! compiled once per build ([`compile`]) and installed by the child last, right before exec
//! ([`install`]), after kiln's own mounts and `pivot_root`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Syscalls refused outright, on every architecture.
const REFUSED: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
];

/// Syscalls only x86_64 has.
#[cfg(target_arch = "x86_64")]
const REFUSED_ARCH: &[i64] = &[
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_uselib,
    libc::SYS_ustat,
];
#[cfg(not(target_arch = "x86_64"))]
const REFUSED_ARCH: &[i64] = &[];

/// x86_64's x32 ABI numbers its calls with this bit set (and a few, ptrace and kexec_load
/// among them, at numbers of their own): refused the same way.
#[cfg(target_arch = "x86_64")]
const X32: Option<(i64, &[i64])> = Some((0x4000_0000, &[521, 528, 532, 533]));
#[cfg(not(target_arch = "x86_64"))]
const X32: Option<(i64, &[i64])> = None;

/// The namespace flags of clone(2) (CLONE_NEWNS ... CLONE_NEWCGROUP, CLONE_NEWTIME).
const CLONE_NAMESPACES: [u64; 8] = [
    0x0002_0000, // NEWNS
    0x0200_0000, // NEWCGROUP
    0x0400_0000, // NEWUTS
    0x0800_0000, // NEWIPC
    0x1000_0000, // NEWUSER
    0x2000_0000, // NEWPID
    0x4000_0000, // NEWNET
    0x0000_0080, // NEWTIME
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("RUN's seccomp filter for {arch}: {why}")]
    Build { arch: &'static str, why: String },
}

/// The filters for this machine, in the order [`install`] loads them; None where seccompiler
/// knows no such architecture (RUN then goes without).
pub fn compile() -> Result<Option<Vec<BpfProgram>>, SeccompError> {
    let arch_name = std::env::consts::ARCH;
    let Ok(arch) = TargetArch::try_from(arch_name) else {
        return Ok(None);
    };
    let err = |e: seccompiler::BackendError| SeccompError::Build {
        arch: arch_name,
        why: e.to_string(),
    };
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in REFUSED.iter().chain(REFUSED_ARCH) {
        refused.insert(*nr, Vec::new());
        if let Some((bit, _)) = X32 {
            refused.insert(*nr | bit, Vec::new());
        }
    }
    if let Some((bit, own)) = X32 {
        for nr in own {
            refused.insert(*nr | bit, Vec::new());
        }
    }
    let mut clone_rules = Vec::new();
    for flag in CLONE_NAMESPACES {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .map_err(err)?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    refused.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        refused,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    Ok(Some(vec![
        BpfProgram::try_from(eperm).map_err(err)?,
        BpfProgram::try_from(clone3).map_err(err)?,
    ]))
}

/// Loads the filters into the calling process. Needs CAP_SYS_ADMIN (no `no_new_privs`, so
/// setuid programs keep working in RUN, as under Docker). Allocation-free: runs between fork
/// and exec.
pub fn install(programs: &[BpfProgram]) -> std::io::Result<()> {
    for program in programs {
        let prog = libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            filter: program.as_ptr().cast_mut().cast(),
        };
        #[allow(unsafe_code)]
        // SAFETY: `prog` points at a live, well-formed BPF program for the duration of the call
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compiles_for_this_machine() {
        let programs = compile().unwrap().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
    }
}
