//! sock_diag (NETLINK_SOCK_DIAG): list the TCP and UDP sockets of this network namespace and
//! close chosen ones with `SOCK_DESTROY` (`CONFIG_INET_DIAG_DESTROY`), as `ss -K`
//! does. A connected UDP socket keeps the backend the socket programs gave it at
//! `connect()`; once that backend is gone, closing the socket makes its owner (a
//! resolver) open a new one, which gets a live backend.
use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, OwnedFd},
};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
/// nlmsghdr (16) + inet_diag_req_v2 (56).
const REQ_LEN: usize = 16 + 56;
/// Offset of `struct inet_diag_sockid` in both inet_diag_req_v2 and inet_diag_msg.
const SOCKID_OFF: usize = 4;
const SOCKID_LEN: usize = 48;

/// One socket: its local address and peer (IPv4, or IPv4-mapped for an IPv6 socket)
/// and the raw `inet_diag_sockid` that names it to `SOCK_DESTROY`.
#[derive(Clone, Debug)]
pub struct UdpSocketInfo {
    pub family: u8,
    pub protocol: u8,
    pub local: SocketAddrV4,
    pub peer: SocketAddrV4,
    pub cookie: u64,
    sockid: [u8; SOCKID_LEN],
}

pub struct SockDiag {
    fd: OwnedFd,
}

impl SockDiag {
    pub fn open() -> io::Result<Self> {
        let fd = crate::nlsock::open(libc::SOCK_DGRAM, NETLINK_SOCK_DIAG)?;
        Ok(SockDiag { fd })
    }

    /// Every UDP socket of both families whose peer is an IPv4 address.
    pub fn udp_sockets(&mut self) -> io::Result<Vec<UdpSocketInfo>> {
        self.sockets(libc::IPPROTO_UDP as u8)
    }

    /// Every socket of `protocol` (TCP or UDP), both families, with an IPv4 peer.
    pub fn sockets(&mut self, protocol: u8) -> io::Result<Vec<UdpSocketInfo>> {
        let mut out = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let req = request(
                SOCK_DIAG_BY_FAMILY,
                NLM_F_REQUEST | NLM_F_DUMP,
                family,
                protocol,
                None,
            );
            for body in self.exchange(&req)? {
                if let Some(s) = parse_msg(&body, protocol) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Closes `sock` (the kernel aborts it: its owner gets ECONNABORTED).
    pub fn destroy(&mut self, sock: &UdpSocketInfo) -> io::Result<()> {
        let req = request(
            SOCK_DESTROY,
            NLM_F_REQUEST | NLM_F_ACK,
            sock.family,
            sock.protocol,
            Some(&sock.sockid),
        );
        self.exchange(&req).map(drop)
    }

    /// Sends `req`; collects reply bodies until the dump ends or the ack.
    fn exchange(&mut self, req: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        // SAFETY: send(2) from our buffer; the kernel is the peer.
        if unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: a dump of many sockets spans many datagrams, never endless.
        for _ in 0..100_000 {
            // SAFETY: recv(2) into our buffer, at most its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("malformed sock_diag reply"));
                }
                let body = &rest[16..len];
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .unwrap_or(-libc::EIO);
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => out.push(body.to_vec()),
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
        Err(io::Error::other("sock_diag reply without end"))
    }
}

/// nlmsghdr + inet_diag_req_v2 for `protocol` of `family`, every state, with `sockid`
/// (or zeroes for a dump).
fn request(
    ty: u16,
    flags: u16,
    family: u8,
    protocol: u8,
    sockid: Option<&[u8; SOCKID_LEN]>,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(REQ_LEN);
    m.extend_from_slice(&(REQ_LEN as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.push(family);
    m.push(protocol);
    m.push(0); // idiag_ext
    m.push(0); // pad
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // idiag_states: all
    match sockid {
        Some(id) => m.extend_from_slice(id),
        None => m.extend_from_slice(&[0; SOCKID_LEN]),
    }
    m
}

/// inet_diag_msg: family, state, timer, retrans, then the sockid (sport, dport: big
/// endian; src, dst: 16 bytes each; if; cookie: two u32, low half first).
fn parse_msg(body: &[u8], protocol: u8) -> Option<UdpSocketInfo> {
    let family = *body.first()?;
    let id: [u8; SOCKID_LEN] = body
        .get(SOCKID_OFF..SOCKID_OFF + SOCKID_LEN)?
        .try_into()
        .ok()?;
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    // IPv4, IPv4-mapped, or the unspecified address of an unbound IPv6 socket.
    let v4 = |a: &[u8]| -> Option<Ipv4Addr> {
        if family == libc::AF_INET as u8 {
            Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else if a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff {
            Some(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
        } else if a.iter().all(|&b| b == 0) {
            Some(Ipv4Addr::UNSPECIFIED)
        } else {
            None
        }
    };
    let addr = v4(&id[20..36])?;
    let local = v4(&id[4..20])?;
    let lo = u32::from_ne_bytes(id[40..44].try_into().ok()?);
    let hi = u32::from_ne_bytes(id[44..48].try_into().ok()?);
    Some(UdpSocketInfo {
        family,
        protocol,
        local: SocketAddrV4::new(local, sport),
        peer: SocketAddrV4::new(addr, dport),
        cookie: u64::from(hi) << 32 | u64::from(lo),
        sockid: id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let r = request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 2, 17, None);
        assert_eq!(r.len(), REQ_LEN);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(r[16], 2);
        assert_eq!(r[17], 17);
    }

    #[test]
    fn lists_a_connected_socket_with_its_cookie() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect("127.0.0.1:9").unwrap();
        let mut diag = SockDiag::open().unwrap();
        let found = diag
            .udp_sockets()
            .unwrap()
            .into_iter()
            .find(|i| {
                i.peer == SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9)
                    && i.family == libc::AF_INET as u8
            })
            .expect("the socket is listed");
        // SO_COOKIE (57) names the same socket.
        let mut cookie = 0u64;
        let mut len = 8u32;
        // SAFETY: getsockopt into a u64 we own.
        let r = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                57,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(found.cookie, cookie);
        diag.destroy(&found).unwrap();
        // Aborted: disconnected, with ECONNABORTED pending for the next receive.
        let err = s.send(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EDESTADDRREQ), "{err}");
        s.set_nonblocking(true).unwrap();
        let err = s.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNABORTED), "{err}");
    }
}
