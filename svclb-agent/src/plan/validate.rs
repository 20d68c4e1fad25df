//! Field validators shared by the planner and the Endpoints mirroring: each returns the
//! parsed value or an [`Invalid`] that the caller ties to an object and a field.
use std::net::{IpAddr, Ipv4Addr};

use super::errors::{ErrorKind, Invalid};
use crate::model::Proto;

/// Parses an address field. `Ok(None)` is a valid IPv6 address: svclb's data path is
/// IPv4 only, so callers skip it (dual-stack objects carry both families).
pub fn ip(text: &str) -> Result<Option<Ipv4Addr>, Invalid> {
    // std's parser is as strict as Kubernetes' own: no leading zeros, no whitespace.
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => Ok(Some(v4)),
        Ok(IpAddr::V6(_)) => Ok(None),
        Err(_) => Err(Invalid::new(
            ErrorKind::InvalidAddress,
            format!("{text:?} is not an IP address"),
        )),
    }
}

/// An address that can be a frontend or an endpoint: the apiserver refuses the
/// special ranges for externalIPs and endpoints, and the data path cannot DNAT to or
/// from them either.
pub fn unicast_ip(text: &str) -> Result<Option<Ipv4Addr>, Invalid> {
    let Some(v4) = ip(text)? else { return Ok(None) };
    let what = if v4.is_unspecified() {
        "unspecified"
    } else if v4.is_loopback() {
        "loopback"
    } else if v4.is_link_local() {
        "link-local"
    } else if v4.is_multicast() {
        "multicast"
    } else if v4.is_broadcast() {
        "broadcast"
    } else {
        return Ok(Some(v4));
    };
    Err(Invalid::new(
        ErrorKind::InvalidAddress,
        format!("{v4} is a {what} address"),
    ))
}

/// A Service port, target port or node port number.
pub fn port(n: i32) -> Result<u16, Invalid> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Invalid::new(
            ErrorKind::InvalidPort,
            format!("port {n} is out of range 1-65535"),
        )),
    }
}

/// A `protocol` field; Kubernetes defaults it to TCP. SCTP is valid Kubernetes but
/// not handled by the data path, so it gets its own error kind.
pub fn protocol(p: Option<&str>) -> Result<Proto, Invalid> {
    match p {
        None | Some("TCP") => Ok(Proto::Tcp),
        Some("UDP") => Ok(Proto::Udp),
        Some("SCTP") => Err(Invalid::new(
            ErrorKind::UnsupportedProtocol,
            "unsupported protocol SCTP (svclb handles TCP and UDP)",
        )),
        Some(other) => Err(Invalid::new(
            ErrorKind::UnknownProtocol,
            format!("unknown protocol {other:?} (expected TCP, UDP or SCTP)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_accepts_v4_skips_v6_rejects_garbage() {
        assert_eq!(ip("198.18.0.10"), Ok(Some(Ipv4Addr::new(198, 18, 0, 10))));
        assert_eq!(ip("fd00::1"), Ok(None));
        for bad in [
            "198.18.0",
            "198.18.0.256",
            "010.1.1.1",
            " 198.18.0.1",
            "",
            "None",
            "host.example",
        ] {
            assert_eq!(
                ip(bad).unwrap_err().kind,
                ErrorKind::InvalidAddress,
                "{bad}"
            );
        }
    }

    #[test]
    fn unicast_ip_rejects_special_ranges() {
        assert_eq!(
            unicast_ip("198.19.1.2"),
            Ok(Some(Ipv4Addr::new(198, 19, 1, 2)))
        );
        for (bad, word) in [
            ("0.0.0.0", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("169.254.1.1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
        ] {
            let e = unicast_ip(bad).unwrap_err();
            assert!(e.message.contains(word), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn port_range() {
        assert_eq!(port(1), Ok(1));
        assert_eq!(port(65535), Ok(65535));
        for bad in [0, -1, 65536, i32::MAX] {
            assert_eq!(port(bad).unwrap_err().kind, ErrorKind::InvalidPort, "{bad}");
        }
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol(None), Ok(Proto::Tcp));
        assert_eq!(protocol(Some("TCP")), Ok(Proto::Tcp));
        assert_eq!(protocol(Some("UDP")), Ok(Proto::Udp));
        assert_eq!(
            protocol(Some("SCTP")).unwrap_err().kind,
            ErrorKind::UnsupportedProtocol
        );
        // Kubernetes protocol names are case sensitive.
        assert_eq!(
            protocol(Some("tcp")).unwrap_err().kind,
            ErrorKind::UnknownProtocol
        );
    }
}
