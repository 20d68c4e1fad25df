//! IPVS generic-netlink messages, encoded by hand after include/uapi/linux/ip_vs.h and
//! include/uapi/linux/genetlink.h (pure; tested byte for byte). Every attribute is
//! `struct nlattr { u16 nla_len; u16 nla_type; }` + payload padded to 4 bytes; ports and
//! netmasks are big-endian (`nla_get_be16`/`be32` in net/netfilter/ipvs/ip_vs_ctl.c),
//! every other integer host-endian.
use std::net::Ipv4Addr;

/// `GENL_ID_CTRL`: the controller that maps family names to ids.
pub const GENL_ID_CTRL: u16 = 0x10;
pub const CTRL_CMD_GETFAMILY: u8 = 3;
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
pub const IPVS_GENL_NAME: &str = "IPVS";
pub const IPVS_GENL_VERSION: u8 = 1;

pub const IPVS_CMD_NEW_SERVICE: u8 = 1;
pub const IPVS_CMD_DEL_SERVICE: u8 = 3;
pub const IPVS_CMD_GET_SERVICE: u8 = 4;
pub const IPVS_CMD_NEW_DEST: u8 = 5;
pub const IPVS_CMD_SET_DEST: u8 = 6;
pub const IPVS_CMD_DEL_DEST: u8 = 7;
pub const IPVS_CMD_GET_DEST: u8 = 8;

pub const IPVS_CMD_ATTR_SERVICE: u16 = 1;
pub const IPVS_CMD_ATTR_DEST: u16 = 2;

pub const IPVS_SVC_ATTR_AF: u16 = 1;
pub const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
pub const IPVS_SVC_ATTR_ADDR: u16 = 3;
pub const IPVS_SVC_ATTR_PORT: u16 = 4;
pub const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
pub const IPVS_SVC_ATTR_FLAGS: u16 = 7;
pub const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
pub const IPVS_SVC_ATTR_NETMASK: u16 = 9;

pub const IPVS_DEST_ATTR_ADDR: u16 = 1;
pub const IPVS_DEST_ATTR_PORT: u16 = 2;
pub const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
pub const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
pub const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
pub const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
pub const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
pub const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
pub const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;

/// `IP_VS_CONN_F_MASQ`: NAT to the real server (the only method that works for pods).
pub const IP_VS_CONN_F_MASQ: u32 = 0;
/// `IP_VS_SVC_F_PERSISTENT`: a client stays on its real server for the timeout.
pub const IP_VS_SVC_F_PERSISTENT: u32 = 0x1;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLA_F_NESTED: u16 = 0x8000;
const AF_INET: u16 = 2;

/// One virtual server (`ipvsadm -A -t|-u ADDR:PORT -s SCHED [-p TIMEOUT]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VirtualServer {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub protocol: u16,
    pub scheduler: String,
    /// Persistence timeout in seconds (sessionAffinity ClientIP); None without.
    pub persistent_s: Option<u32>,
}

/// One real server of a virtual server, NAT-forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RealServer {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

/// Appends `nlattr` + payload + padding.
pub fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// Appends a nested attribute whose payload `inner` writes.
pub fn put_nested(buf: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    inner(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

/// `nlmsghdr` + `genlmsghdr` + `attrs`.
pub fn message(family: u16, flags: u16, seq: u32, cmd: u8, version: u8, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
    m.extend_from_slice(&[cmd, version, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// CTRL_CMD_GETFAMILY "IPVS".
pub fn get_family(seq: u32) -> Vec<u8> {
    let mut a = Vec::new();
    let mut name = IPVS_GENL_NAME.as_bytes().to_vec();
    name.push(0);
    put_attr(&mut a, CTRL_ATTR_FAMILY_NAME, &name);
    message(
        GENL_ID_CTRL,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
        &a,
    )
}

/// The attributes that name a virtual server (AF, PROTOCOL, ADDR, PORT).
fn service_id(buf: &mut Vec<u8>, vs: &VirtualServer) {
    put_attr(buf, IPVS_SVC_ATTR_AF, &AF_INET.to_ne_bytes());
    put_attr(buf, IPVS_SVC_ATTR_PROTOCOL, &vs.protocol.to_ne_bytes());
    put_attr(buf, IPVS_SVC_ATTR_ADDR, &vs.addr.octets());
    put_attr(buf, IPVS_SVC_ATTR_PORT, &vs.port.to_be_bytes());
}

/// IPVS_CMD_NEW_SERVICE: id, scheduler, flags (persistent), timeout, netmask /32.
pub fn new_service(family: u16, seq: u32, vs: &VirtualServer) -> Vec<u8> {
    let mut a = Vec::new();
    put_nested(&mut a, IPVS_CMD_ATTR_SERVICE, |b| {
        service_id(b, vs);
        let mut sched = vs.scheduler.as_bytes().to_vec();
        sched.push(0);
        put_attr(b, IPVS_SVC_ATTR_SCHED_NAME, &sched);
        let flags = if vs.persistent_s.is_some() {
            IP_VS_SVC_F_PERSISTENT
        } else {
            0
        };
        // struct ip_vs_flags { __u32 flags; __u32 mask; }
        let mut f = flags.to_ne_bytes().to_vec();
        f.extend_from_slice(&u32::MAX.to_ne_bytes());
        put_attr(b, IPVS_SVC_ATTR_FLAGS, &f);
        put_attr(
            b,
            IPVS_SVC_ATTR_TIMEOUT,
            &vs.persistent_s.unwrap_or(0).to_ne_bytes(),
        );
        put_attr(b, IPVS_SVC_ATTR_NETMASK, &u32::MAX.to_be_bytes());
    });
    message(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        IPVS_CMD_NEW_SERVICE,
        IPVS_GENL_VERSION,
        &a,
    )
}

/// IPVS_CMD_DEL_SERVICE (its real servers go with it).
pub fn del_service(family: u16, seq: u32, vs: &VirtualServer) -> Vec<u8> {
    let mut a = Vec::new();
    put_nested(&mut a, IPVS_CMD_ATTR_SERVICE, |b| service_id(b, vs));
    message(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        IPVS_CMD_DEL_SERVICE,
        IPVS_GENL_VERSION,
        &a,
    )
}

/// IPVS_CMD_GET_SERVICE as a dump of every virtual server.
pub fn get_services(family: u16, seq: u32) -> Vec<u8> {
    message(
        family,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        IPVS_CMD_GET_SERVICE,
        IPVS_GENL_VERSION,
        &[],
    )
}

/// IPVS_CMD_GET_DEST: every real server of `vs`.
pub fn get_dests(family: u16, seq: u32, vs: &VirtualServer) -> Vec<u8> {
    let mut a = Vec::new();
    put_nested(&mut a, IPVS_CMD_ATTR_SERVICE, |b| service_id(b, vs));
    message(
        family,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        IPVS_CMD_GET_DEST,
        IPVS_GENL_VERSION,
        &a,
    )
}

fn dest_attrs(b: &mut Vec<u8>, rs: &RealServer, full: bool) {
    put_attr(b, IPVS_DEST_ATTR_ADDR, &rs.addr.octets());
    put_attr(b, IPVS_DEST_ATTR_PORT, &rs.port.to_be_bytes());
    if full {
        put_attr(
            b,
            IPVS_DEST_ATTR_FWD_METHOD,
            &IP_VS_CONN_F_MASQ.to_ne_bytes(),
        );
        put_attr(b, IPVS_DEST_ATTR_WEIGHT, &rs.weight.to_ne_bytes());
        put_attr(b, IPVS_DEST_ATTR_U_THRESH, &0u32.to_ne_bytes());
        put_attr(b, IPVS_DEST_ATTR_L_THRESH, &0u32.to_ne_bytes());
    }
    put_attr(b, IPVS_DEST_ATTR_ADDR_FAMILY, &AF_INET.to_ne_bytes());
}

/// IPVS_CMD_NEW_DEST: masquerading, `weight`, no thresholds.
pub fn new_dest(family: u16, seq: u32, vs: &VirtualServer, rs: &RealServer) -> Vec<u8> {
    let mut a = Vec::new();
    put_nested(&mut a, IPVS_CMD_ATTR_SERVICE, |b| service_id(b, vs));
    put_nested(&mut a, IPVS_CMD_ATTR_DEST, |b| dest_attrs(b, rs, true));
    message(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        IPVS_CMD_NEW_DEST,
        IPVS_GENL_VERSION,
        &a,
    )
}

/// IPVS_CMD_SET_DEST: the real server's weight becomes `rs.weight` (0: it takes no
/// new connections and keeps its established ones: graceful termination).
pub fn set_dest(family: u16, seq: u32, vs: &VirtualServer, rs: &RealServer) -> Vec<u8> {
    let mut a = Vec::new();
    put_nested(&mut a, IPVS_CMD_ATTR_SERVICE, |b| service_id(b, vs));
    put_nested(&mut a, IPVS_CMD_ATTR_DEST, |b| dest_attrs(b, rs, true));
    message(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        IPVS_CMD_SET_DEST,
        IPVS_GENL_VERSION,
        &a,
    )
}

/// IPVS_CMD_DEL_DEST.
pub fn del_dest(family: u16, seq: u32, vs: &VirtualServer, rs: &RealServer) -> Vec<u8> {
    let mut a = Vec::new();
    put_nested(&mut a, IPVS_CMD_ATTR_SERVICE, |b| service_id(b, vs));
    put_nested(&mut a, IPVS_CMD_ATTR_DEST, |b| dest_attrs(b, rs, false));
    message(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        IPVS_CMD_DEL_DEST,
        IPVS_GENL_VERSION,
        &a,
    )
}

/// Attributes of a payload: (type without flags, payload).
pub fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        let padded = (len + 3) & !3;
        buf = &buf[padded.min(buf.len())..];
    }
    out
}

/// A virtual server from the IPVS_CMD_ATTR_SERVICE payload of a GET reply.
pub fn parse_service(payload: &[u8]) -> Option<VirtualServer> {
    let a = attrs(payload);
    let get = |t: u16| a.iter().find(|(ty, _)| *ty == t).map(|(_, p)| *p);
    if u16::from_ne_bytes(get(IPVS_SVC_ATTR_AF)?.get(..2)?.try_into().ok()?) != AF_INET {
        return None;
    }
    let addr: [u8; 4] = get(IPVS_SVC_ATTR_ADDR)?.get(..4)?.try_into().ok()?;
    let flags = u32::from_ne_bytes(get(IPVS_SVC_ATTR_FLAGS)?.get(..4)?.try_into().ok()?);
    let timeout = u32::from_ne_bytes(get(IPVS_SVC_ATTR_TIMEOUT)?.get(..4)?.try_into().ok()?);
    let sched = get(IPVS_SVC_ATTR_SCHED_NAME)?;
    Some(VirtualServer {
        addr: Ipv4Addr::from(addr),
        port: u16::from_be_bytes(get(IPVS_SVC_ATTR_PORT)?.get(..2)?.try_into().ok()?),
        protocol: u16::from_ne_bytes(get(IPVS_SVC_ATTR_PROTOCOL)?.get(..2)?.try_into().ok()?),
        scheduler: String::from_utf8_lossy(sched.split(|b| *b == 0).next().unwrap_or_default())
            .into_owned(),
        persistent_s: (flags & IP_VS_SVC_F_PERSISTENT != 0).then_some(timeout),
    })
}

/// The connections IPVS counts on a real server (`ipvsadm -Ln`'s ActiveConn and
/// InActConn), from the IPVS_CMD_ATTR_DEST payload of a GET reply: 0 when absent.
pub fn parse_dest_conns(payload: &[u8]) -> u64 {
    let a = attrs(payload);
    let get = |t: u16| {
        a.iter()
            .find(|(ty, _)| *ty == t)
            .and_then(|(_, p)| Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?)))
            .unwrap_or(0)
    };
    u64::from(get(IPVS_DEST_ATTR_ACTIVE_CONNS)) + u64::from(get(IPVS_DEST_ATTR_INACT_CONNS))
}

/// A real server from the IPVS_CMD_ATTR_DEST payload of a GET reply.
pub fn parse_dest(payload: &[u8]) -> Option<RealServer> {
    let a = attrs(payload);
    let get = |t: u16| a.iter().find(|(ty, _)| *ty == t).map(|(_, p)| *p);
    let addr: [u8; 4] = get(IPVS_DEST_ATTR_ADDR)?.get(..4)?.try_into().ok()?;
    Some(RealServer {
        addr: Ipv4Addr::from(addr),
        port: u16::from_be_bytes(get(IPVS_DEST_ATTR_PORT)?.get(..2)?.try_into().ok()?),
        weight: u32::from_ne_bytes(get(IPVS_DEST_ATTR_WEIGHT)?.get(..4)?.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(persistent_s: Option<u32>) -> VirtualServer {
        VirtualServer {
            addr: Ipv4Addr::new(198, 18, 0, 10),
            port: 80,
            protocol: 6,
            scheduler: "rr".into(),
            persistent_s,
        }
    }

    /// Little-endian host (x86_64, aarch64): the layout as the kernel reads it there.
    #[cfg(target_endian = "little")]
    #[test]
    fn get_family_is_the_controller_request_for_ipvs() {
        let m = get_family(7);
        let want: [u8; 32] = [
            32, 0, 0, 0, // nlmsg_len: 16 + 4 + 12 (the attribute, padded)
            0x10, 0, // GENL_ID_CTRL
            5, 0, // NLM_F_REQUEST | NLM_F_ACK
            7, 0, 0, 0, // seq
            0, 0, 0, 0, // pid
            3, 1, 0, 0, // CTRL_CMD_GETFAMILY, version 1
            9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0,
            0, // CTRL_ATTR_FAMILY_NAME "IPVS\0" + pad
        ];
        assert_eq!(m, want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn new_service_carries_every_attribute_in_the_documented_layout() {
        let m = new_service(0x22, 1, &vs(Some(10800)));
        let header = [
            0,
            0,
            0,
            0,
            0x22,
            0,
            5,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0, // nlmsghdr (len checked below)
            IPVS_CMD_NEW_SERVICE,
            IPVS_GENL_VERSION,
            0,
            0,
        ];
        assert_eq!(&m[4..20], &header[4..]);
        assert_eq!(
            u32::from_le_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        let svc: Vec<u8> = [
            &[6, 0, 1, 0, 2, 0, 0, 0][..],   // AF = AF_INET (u16) + pad
            &[6, 0, 2, 0, 6, 0, 0, 0],       // PROTOCOL = 6 (u16) + pad
            &[8, 0, 3, 0, 198, 18, 0, 10],   // ADDR = 4 bytes
            &[6, 0, 4, 0, 0, 80, 0, 0],      // PORT = 80, big-endian + pad
            &[7, 0, 6, 0, b'r', b'r', 0, 0], // SCHED_NAME "rr\0" + pad
            &[12, 0, 7, 0, 1, 0, 0, 0, 255, 255, 255, 255], // FLAGS {PERSISTENT, mask ~0}
            &[8, 0, 8, 0, 0x30, 0x2a, 0, 0], // TIMEOUT = 10800
            &[8, 0, 9, 0, 255, 255, 255, 255], // NETMASK /32, big-endian
        ]
        .concat();
        let mut nested = vec![(4 + svc.len()) as u8, 0, 1, 0x80]; // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED
        nested.extend_from_slice(&svc);
        assert_eq!(&m[20..], &nested[..]);
        // And back.
        let (ty, payload) = attrs(&m[20..])[0];
        assert_eq!(ty, IPVS_CMD_ATTR_SERVICE);
        assert_eq!(parse_service(payload), Some(vs(Some(10800))));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn new_and_del_dest_name_the_service_and_the_real_server() {
        let rs = RealServer {
            addr: Ipv4Addr::new(198, 19, 1, 2),
            port: 8080,
            weight: 1,
        };
        let m = new_dest(0x22, 2, &vs(None), &rs);
        assert_eq!(m[16], IPVS_CMD_NEW_DEST);
        let top = attrs(&m[20..]);
        assert_eq!(
            top.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST]
        );
        // The service part names it only (AF, PROTOCOL, ADDR, PORT).
        assert_eq!(
            attrs(top[0].1).iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let dest: Vec<u8> = [
            &[8, 0, 1, 0, 198, 19, 1, 2][..], // ADDR
            &[6, 0, 2, 0, 0x1f, 0x90, 0, 0],  // PORT 8080 big-endian
            &[8, 0, 3, 0, 0, 0, 0, 0],        // FWD_METHOD = IP_VS_CONN_F_MASQ
            &[8, 0, 4, 0, 1, 0, 0, 0],        // WEIGHT 1
            &[8, 0, 5, 0, 0, 0, 0, 0],        // U_THRESH
            &[8, 0, 6, 0, 0, 0, 0, 0],        // L_THRESH
            &[6, 0, 11, 0, 2, 0, 0, 0],       // ADDR_FAMILY AF_INET
        ]
        .concat();
        assert_eq!(top[1].1, &dest[..]);
        assert_eq!(parse_dest(top[1].1), Some(rs));
        assert_eq!(parse_dest_conns(top[1].1), 0, "no counters in a request");
        let drained = RealServer { weight: 0, ..rs };
        let set = set_dest(0x22, 4, &vs(None), &drained);
        assert_eq!(set[16], IPVS_CMD_SET_DEST);
        let top_set = attrs(&set[20..]);
        assert_eq!(parse_dest(top_set[1].1), Some(drained));
        // A reply's counters: ACTIVE_CONNS 3, INACT_CONNS 2.
        let reply: Vec<u8> = [
            dest.as_slice(),
            &[8, 0, 7, 0, 3, 0, 0, 0],
            &[8, 0, 8, 0, 2, 0, 0, 0],
        ]
        .concat();
        assert_eq!(parse_dest_conns(&reply), 5);
        let d = del_dest(0x22, 3, &vs(None), &rs);
        assert_eq!(d[16], IPVS_CMD_DEL_DEST);
        let top = attrs(&d[20..]);
        assert_eq!(
            attrs(top[1].1).iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [1, 2, 11]
        );
    }

    #[test]
    fn del_service_and_gets() {
        let d = del_service(0x22, 4, &vs(None));
        assert_eq!((d[16], d[17]), (IPVS_CMD_DEL_SERVICE, IPVS_GENL_VERSION));
        let g = get_services(0x22, 5);
        assert_eq!(g.len(), 20);
        assert_eq!(u16::from_ne_bytes([g[6], g[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(g[16], IPVS_CMD_GET_SERVICE);
        let gd = get_dests(0x22, 6, &vs(None));
        assert_eq!(gd[16], IPVS_CMD_GET_DEST);
        assert_eq!(attrs(&gd[20..])[0].0, IPVS_CMD_ATTR_SERVICE);
    }
}
