//! Interface facts the agent needs: the IPv4 addresses of an interface.
use std::net::Ipv4Addr;

/// IPv4 addresses configured on `iface` (in the agent's network namespace).
pub fn ipv4_addrs(iface: &str) -> std::io::Result<Vec<Ipv4Addr>> {
    Ok(crate::ifaces::list()?
        .into_iter()
        .filter(|i| i.name == iface)
        .flat_map(|i| i.ipv4)
        .collect())
}

/// The kernel driver name of `iface` (ETHTOOL_GDRVINFO), e.g. "veth", "netkit", "virtio_net".
pub fn driver(iface: &str) -> std::io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    if iface.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: plain-old-data structs, zero is a valid value for every field.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: a datagram socket used only for the ioctl and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCETHTOOL reads `req` and writes `info`, both live for the call.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) };
    let err = std::io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(err);
    }
    let end = info
        .driver
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Whether `iface` is one end of a pair whose peer `bpf_redirect_peer` can reach.
pub fn has_peer(iface: &str) -> bool {
    matches!(driver(iface).as_deref(), Ok("veth" | "netkit"))
}

/// Interface index of `iface`.
pub fn ifindex(iface: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(iface).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in interface name")
    })?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_127_0_0_1() {
        assert!(
            super::ipv4_addrs("lo")
                .unwrap()
                .contains(&std::net::Ipv4Addr::LOCALHOST)
        );
        assert!(super::ipv4_addrs("no-such-iface0").unwrap().is_empty());
    }
}
