//! A do-nothing XDP program (`return XDP_PASS`) for the far end of a veth.
//!
//! A frame sent back with XDP_TX from the node's veth lands in the peer veth's ring,
//! but the kernel only schedules the peer to read that ring when the peer has an XDP
//! program of its own (veth_xdp_flush); otherwise the frame waits there, unseen.
//! A physical NIC puts the frame on the wire instead. Attaching this program to the
//! client's end makes the test wire behave like that, so a reply built by the node's XDP
//! program (a NodePort reject) reaches the client.

use std::{
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    thread,
};

use anyhow::{Context, Result, anyhow, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `mov r0, XDP_PASS (2); exit`.
const PROGRAM: [u64; 2] = [
    // code 0xb7 (alu64 mov imm), dst r0, imm 2 — little-endian bpf_insn.
    0x0000_0002_0000_00b7,
    // code 0x95 (exit).
    0x0000_0000_0000_0095,
];

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD (the kernel treats the
/// omitted tail as zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for BPF_LINK_CREATE.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// The attachment; detached when dropped (or when the interface goes away).
#[derive(Debug)]
pub struct XdpPass {
    _link: OwnedFd,
}

/// Attaches the program in driver mode to `iface` in network namespace `netns`.
pub fn attach(netns: &str, iface: &str) -> Result<XdpPass> {
    let ns_path = format!("/run/netns/{netns}");
    let iface = iface.to_owned();
    // Only this short-lived thread enters the namespace: BPF_LINK_CREATE resolves the
    // ifindex in the caller's namespace.
    thread::spawn(move || attach_here(&ns_path, &iface))
        .join()
        .map_err(|_| anyhow!("XDP_PASS attach thread panicked"))?
        .map(|link| XdpPass { _link: link })
}

fn attach_here(ns_path: &str, iface: &str) -> Result<OwnedFd> {
    let ns = File::open(ns_path).with_context(|| format!("open {ns_path}"))?;
    // SAFETY: setns(2) on this thread only; the fd is valid for the call.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns_path}: {}", std::io::Error::last_os_error());
    }
    let c_iface = CString::new(iface)?;
    // SAFETY: if_nametoindex(3) with a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(c_iface.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface} in {ns_path}");
    }
    let license = CString::new("GPL")?;
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"xdp_pass");
    let load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: PROGRAM.len() as u32,
        insns: PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &load).context("BPF_PROG_LOAD (XDP_PASS)")?;
    let link = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: XDP_FLAGS_DRV_MODE,
    };
    bpf(BPF_LINK_CREATE, &link).with_context(|| format!("BPF_LINK_CREATE (XDP on {iface})"))
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> Result<OwnedFd> {
    // SAFETY: bpf(2) reads `size_of::<T>()` bytes of a live, initialised attr.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
