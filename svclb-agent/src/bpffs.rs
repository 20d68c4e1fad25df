//! The bpffs the pins live on. systemd mounts one at /sys/fs/bpf at boot; minimal nodes
//! and containers may not have it, and without it `--mode auto` would quietly run
//! iptables. So, as Cilium does, the agent mounts one where its pins go.
use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// statfs(2) `f_type` of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs is mounted on a systemd node.
pub const SYS_FS_BPF: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting bpffs at {path} (needs CAP_SYS_ADMIN; or mount it on the node): {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The mount point that must hold a bpffs for pins under `pin_root`: /sys/fs/bpf when
/// the root is under it (one bpffs for everything pinned on the node), else the root
/// itself.
pub fn mount_point(pin_root: &Path) -> PathBuf {
    if pin_root.starts_with(SYS_FS_BPF) {
        PathBuf::from(SYS_FS_BPF)
    } else {
        pin_root.to_owned()
    }
}

/// Whether `path` is on a bpffs (false when it does not exist).
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) into a zeroed struct we own, with a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Mounts a bpffs at [`mount_point`]`(pin_root)` unless one is there; returns where it
/// mounted one, or None when there was one already.
pub fn ensure_mounted(pin_root: &Path) -> Result<Option<PathBuf>, BpffsError> {
    let at = mount_point(pin_root);
    if is_bpffs(&at) {
        return Ok(None);
    }
    std::fs::create_dir_all(&at).map_err(|source| BpffsError::Create {
        path: at.clone(),
        source,
    })?;
    let mount_err = |source| BpffsError::Mount {
        path: at.clone(),
        source,
    };
    let target = CString::new(at.as_os_str().as_bytes())
        .map_err(|_| mount_err(std::io::ErrorKind::InvalidInput.into()))?;
    // mode=0700: pins are root's (systemd mounts it so too).
    let (source, fstype, data) = (c"bpffs", c"bpf", c"mode=0700");
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(mount_err(std::io::Error::last_os_error()));
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_under_sys_fs_bpf_share_its_mount() {
        assert_eq!(
            mount_point(Path::new("/sys/fs/bpf/svclb")),
            Path::new("/sys/fs/bpf")
        );
        assert_eq!(
            mount_point(Path::new("/sys/fs/bpf")),
            Path::new("/sys/fs/bpf")
        );
        // A prefix of the name is not a parent.
        assert_eq!(
            mount_point(Path::new("/sys/fs/bpfx/svclb")),
            Path::new("/sys/fs/bpfx/svclb")
        );
        assert_eq!(
            mount_point(Path::new("/run/svclb/bpf")),
            Path::new("/run/svclb/bpf")
        );
    }

    #[test]
    fn a_plain_directory_is_not_a_bpffs() {
        assert!(!is_bpffs(&std::env::temp_dir()));
        assert!(!is_bpffs(Path::new("/no/such/dir")));
    }
}
