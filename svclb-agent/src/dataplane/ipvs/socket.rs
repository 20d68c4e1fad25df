//! A generic-netlink socket speaking to the IPVS family: requests with acks, and dumps.
use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use super::msg::{
    self, CTRL_ATTR_FAMILY_ID, IPVS_CMD_ATTR_DEST, IPVS_CMD_ATTR_SERVICE, RealServer, VirtualServer,
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("the kernel refused {what}: {err}")]
    Refused { what: String, err: io::Error },
    #[error(
        "no IPVS generic-netlink family (kernel without IP_VS, or the ip_vs module not loaded)"
    )]
    NoFamily,
    #[error("malformed netlink reply to {0}")]
    Malformed(String),
}

pub struct IpvsSocket {
    fd: OwnedFd,
    family: u16,
    seq: u32,
}

impl IpvsSocket {
    /// Opens a NETLINK_GENERIC socket and resolves the "IPVS" family.
    pub fn open() -> Result<Self, NlError> {
        let fd = crate::nlsock::open(libc::SOCK_RAW, libc::NETLINK_GENERIC)?;
        let mut s = IpvsSocket {
            fd,
            family: 0,
            seq: 0,
        };
        let seq = s.next_seq();
        let replies = s
            .request(&msg::get_family(seq), "CTRL_CMD_GETFAMILY IPVS")
            .map_err(|e| match e {
                NlError::Refused { .. } => NlError::NoFamily,
                e => e,
            })?;
        let id = replies
            .iter()
            .flat_map(|p| msg::attrs(p))
            .find(|(t, _)| *t == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, p)| Some(u16::from_ne_bytes(p.get(..2)?.try_into().ok()?)))
            .ok_or(NlError::NoFamily)?;
        s.family = id;
        Ok(s)
    }

    pub fn family(&self) -> u16 {
        self.family
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `req` and collects the attribute payloads of every reply (after the genl
    /// header) until the ack or the end of the dump.
    pub fn request(&mut self, req: &[u8], what: &str) -> Result<Vec<Vec<u8>>, NlError> {
        // SAFETY: send(2) from a buffer we own; the kernel is the peer (no address).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: a dump of many services arrives in many datagrams, never endless.
        for _ in 0..100_000 {
            // SAFETY: recv(2) into our buffer, at most its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error().into());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                if len < 16 || len > rest.len() {
                    return Err(NlError::Malformed(what.to_owned()));
                }
                let body = &rest[16..len];
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            body.get(..4)
                                .ok_or_else(|| NlError::Malformed(what.to_owned()))?
                                .try_into()
                                .expect("4 bytes"),
                        );
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(NlError::Refused {
                            what: what.to_owned(),
                            err: io::Error::from_raw_os_error(-code),
                        });
                    }
                    _ => out.push(body.get(4..).unwrap_or_default().to_vec()),
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
        Err(NlError::Malformed(what.to_owned()))
    }

    pub fn services(&mut self) -> Result<Vec<VirtualServer>, NlError> {
        let seq = self.next_seq();
        let replies = self.request(&msg::get_services(self.family, seq), "IPVS_CMD_GET_SERVICE")?;
        Ok(replies
            .iter()
            .flat_map(|p| {
                msg::attrs(p)
                    .into_iter()
                    .filter(|(t, _)| *t == IPVS_CMD_ATTR_SERVICE)
                    .map(|(_, p)| p.to_vec())
                    .collect::<Vec<_>>()
            })
            .filter_map(|p| msg::parse_service(&p))
            .collect())
    }

    pub fn dests(&mut self, vs: &VirtualServer) -> Result<Vec<RealServer>, NlError> {
        Ok(self
            .dests_with_conns(vs)?
            .into_iter()
            .map(|(rs, _)| rs)
            .collect())
    }

    /// Every real server of `vs` with its connection count (active + inactive).
    pub fn dests_with_conns(
        &mut self,
        vs: &VirtualServer,
    ) -> Result<Vec<(RealServer, u64)>, NlError> {
        let seq = self.next_seq();
        let replies = self.request(&msg::get_dests(self.family, seq, vs), "IPVS_CMD_GET_DEST")?;
        Ok(replies
            .iter()
            .flat_map(|p| {
                msg::attrs(p)
                    .into_iter()
                    .filter(|(t, _)| *t == IPVS_CMD_ATTR_DEST)
                    .map(|(_, p)| p.to_vec())
                    .collect::<Vec<_>>()
            })
            .filter_map(|p| Some((msg::parse_dest(&p)?, msg::parse_dest_conns(&p))))
            .collect())
    }

    /// Sends one request that expects only an ack.
    pub fn call(
        &mut self,
        build: impl FnOnce(u16, u32) -> Vec<u8>,
        what: &str,
    ) -> Result<(), NlError> {
        let seq = self.next_seq();
        let req = build(self.family, seq);
        self.request(&req, what).map(|_| ())
    }
}
