//! The socket programs for node-local clients: cgroup sock_addr programs on the cgroup
//! v2 root, attached through pinned bpf_links like TC and XDP, so an agent restart
//! leaves them serving and a new agent swaps its programs in atomically
//! (`BPF_LINK_UPDATE`).
use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink};
use std::collections::BTreeSet;

use svclb_common::{PROTO_UDP, SOCK_PROGS, SockRevKey, SockRevValue};
use tracing::info;

use crate::sockdiag::SockDiag;

use super::{
    attach::detach_pinned,
    pins::{Hook, PinLayout},
};

/// The first cgroup2 mount in `mountinfo` (fields: id parent major:minor root
/// mountpoint options … - fstype source super-options).
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = pre.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v as char);
            i += 4;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Where the socket programs go: `configured`, else the cgroup v2 root.
pub fn cgroup_root(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = configured {
        if !is_cgroup2(p) {
            anyhow::bail!(
                "--cgroup-root {} is not a cgroup v2 directory (on a hybrid cgroup v1/v2 \
                 node the v2 hierarchy is usually /sys/fs/cgroup/unified)",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    cgroup2_mount(&mountinfo).context(
        "no cgroup v2 is mounted (mount cgroup2, e.g. on /sys/fs/cgroup, or give --cgroup-root)",
    )
}

/// Whether `path` is on a cgroup v2 filesystem (statfs `CGROUP2_SUPER_MAGIC`).
fn is_cgroup2(path: &Path) -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) into a zeroed struct we own, with a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// Loads every socket program and attaches it to `cgroup` through the pin
/// `links/sock-<hook>`, replacing the program of an existing pin in place.
pub fn attach_all(ebpf: &mut aya::Ebpf, pins: &PinLayout, cgroup: &Path) -> Result<()> {
    let dir = File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    for (name, hook) in SOCK_PROGS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name} in the object"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifying the {hook} socket program"))?;
        let path = pins.link(Hook::Sock, hook);
        if path.exists() {
            let prog_fd = prog.fd()?.as_fd().as_raw_fd();
            match link_update(&path, prog_fd) {
                Ok(()) => {
                    info!(
                        hook,
                        "socket program replaced atomically in the pinned link"
                    );
                    continue;
                }
                Err(e) => {
                    // A link whose cgroup was removed is defunct: start over.
                    info!(hook, error = %e, "pinned socket link is stale; attaching anew");
                    detach_pinned(&path)?;
                }
            }
        }
        // A bpf_link is always one of many on its cgroup; the kernel refuses any
        // attach flag on link creation, so "Single" (no flag) it is.
        let id = prog
            .attach(&dir, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {hook} to cgroup {}", cgroup.display()))?;
        let link: FdLink = prog
            .take_link(id)?
            .try_into()
            .context("the cgroup attachment is not a bpf_link (kernel < 5.7?)")?;
        link.pin(&path)
            .with_context(|| format!("pinning {}", path.display()))?;
    }
    info!(cgroup = %cgroup.display(), hooks = SOCK_PROGS.len(), "socket programs attached (node-local clients)");
    Ok(())
}

/// Removes every socket program pin (the programs detach with them).
pub fn detach_all(pins: &PinLayout) -> Result<()> {
    for (_, path) in pins.pinned_links(Hook::Sock) {
        detach_pinned(&path)?;
    }
    Ok(())
}

/// `BPF_LINK_UPDATE` of the link pinned at `path` to program `prog_fd`.
fn link_update(path: &Path, prog_fd: i32) -> io::Result<()> {
    let link = obj_get(path)?;
    #[repr(C)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let attr = Attr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog_fd as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    const BPF_LINK_UPDATE: libc::c_long = 29;
    // SAFETY: attr is the link_update part of bpf_attr and lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `BPF_OBJ_GET`: an fd of the object pinned at `path`.
fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let attr = Attr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    const BPF_OBJ_GET: libc::c_long = 7;
    // SAFETY: attr is the obj_get part of bpf_attr; the path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Closes the node's connected UDP sockets that the socket programs sent to a
/// (backend set, backend) pair in `gone`: they would keep sending to a removed
/// endpoint. Returns how many were closed.
pub fn close_udp(
    revnat: &aya::maps::HashMap<aya::maps::MapData, SockRevKey, SockRevValue>,
    gone: &BTreeSet<(u32, u32)>,
) -> Result<usize> {
    let mut diag = SockDiag::open().context("opening a sock_diag socket")?;
    let mut closed = 0;
    for sock in diag.udp_sockets().context("listing UDP sockets")? {
        let key = SockRevKey {
            cookie: sock.cookie,
            addr_be: u32::from(*sock.peer.ip()).to_be(),
            port_be: sock.peer.port().to_be(),
            proto: PROTO_UDP,
            _pad: 0,
        };
        let Ok(v) = revnat.get(&key, 0) else { continue };
        if !gone.contains(&(v.svc_id, v.backend_id)) {
            continue;
        }
        match diag.destroy(&sock) {
            Ok(()) => closed += 1,
            // Closed by its owner meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(e).context(
                    "closing a UDP socket of a removed backend (SOCK_DESTROY needs CONFIG_INET_DIAG_DESTROY)",
                );
            }
        }
    }
    Ok(closed)
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE`, 5.14+).
pub fn own_netns_cookie() -> Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket() for SO_NETNS_COOKIE");
    }
    // SAFETY: fd is a new socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for the kernel to write.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            &mut cookie as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error())
            .context("getsockopt(SO_NETNS_COOKIE) (Linux 5.14+)");
    }
    if cookie == 0 {
        bail!("the kernel gave network namespace cookie 0");
    }
    Ok(cookie)
}

/// The namespace cookie as the attached forward programs see it: a UDP socket of ours
/// (named to them by its `SO_COOKIE`, Linux 4.14+) connects to 127.0.0.1 and the
/// program writes its namespace's cookie back (see `Config::probe_sock_cookie`). Written
/// into the config as `host_netns_cookie`.
pub fn learn_netns_cookie(maps: &mut super::maps::Maps) -> Result<u64> {
    const SO_COOKIE: libc::c_int = 57;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").context("a UDP socket to learn with")?;
    let mut probe: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: probe and len are valid for the kernel to write.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            &mut probe as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 || probe == 0 {
        return Err(io::Error::last_os_error()).context("getsockopt(SO_COOKIE)");
    }
    let mut cfg = maps.config()?;
    cfg.probe_sock_cookie = probe;
    cfg.learned_netns_cookie = 0;
    maps.set_config(cfg)?;
    let probe_addr = std::net::SocketAddrV4::new(
        svclb_common::NETNS_PROBE_ADDR.into(),
        svclb_common::NETNS_PROBE_PORT,
    );
    let _ = sock.connect(probe_addr);
    let learned = maps.config()?.learned_netns_cookie;
    cfg.probe_sock_cookie = 0;
    cfg.learned_netns_cookie = 0;
    if learned == 0 {
        maps.set_config(cfg)?;
        bail!(
            "the socket programs did not see the agent's probe socket (is the agent inside the cgroup they are attached to?)"
        );
    }
    cfg.host_netns_cookie = learned;
    maps.set_config(cfg)?;
    Ok(learned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let none = "27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(cgroup2_mount(none), None);
        let escaped = "40 1 0:31 / /run/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(escaped), Some(PathBuf::from("/run/my cg")));
    }
}
