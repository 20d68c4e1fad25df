//! Interface facts the agent needs: the IPv4 addresses of an interface.
use std::{ffi::CStr, net::Ipv4Addr};

/// IPv4 addresses configured on `iface` (in the agent's network namespace).
pub fn ipv4_addrs(iface: &str) -> std::io::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; we only read it.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated name owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null; family is checked before the cast.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if name.to_bytes() == iface.as_bytes() && i32::from(family) == libc::AF_INET {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
    }
    // SAFETY: `head` came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_127_0_0_1() {
        assert!(super::ipv4_addrs("lo").unwrap().contains(&std::net::Ipv4Addr::LOCALHOST));
        assert!(super::ipv4_addrs("no-such-iface0").unwrap().is_empty());
    }
}
