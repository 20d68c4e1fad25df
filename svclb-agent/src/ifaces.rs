//! `--iface` values that select interfaces instead of naming them: `auto` (every
//! interface that is up, except loopback) and shell-style patterns (`eth*`, `veth*`,
//! `en?0`). Resolved at start and again every second, since new pods bring new veths;
//! the local addresses for `--nodeport-addresses` come from the start-time list.
use std::{collections::BTreeSet, ffi::CStr, net::Ipv4Addr};

/// The `--iface` value that selects every up, non-loopback interface.
pub const AUTO: &str = "auto";

/// What selection needs to know about one interface of the agent's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    pub ipv4: Vec<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IfaceError {
    #[error("--iface {0:?}: empty interface name or pattern")]
    Empty(String),
    #[error("--iface {value:?}: no interface matches (interfaces here: {present})")]
    NoMatch { value: String, present: String },
}

/// Whether `value` is a selector rather than a literal interface name.
pub fn is_selector(value: &str) -> bool {
    value == AUTO || value.contains(['*', '?'])
}

/// The interfaces `values` select, in the order given, without duplicates. Literal names
/// are kept as they are (a missing one is reported when the program is attached, as
/// before); a selector that matches nothing is ignored unless nothing at all is
/// selected, so `eth*,veth*` works on a node with no pods yet.
pub fn select(values: &[String], present: &[Iface]) -> Result<Vec<String>, IfaceError> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |name: &str, out: &mut Vec<String>| {
        if seen.insert(name.to_string()) {
            out.push(name.to_string());
        }
    };
    for value in values {
        let value = value.trim();
        if value.is_empty() {
            return Err(IfaceError::Empty(value.into()));
        }
        if !is_selector(value) {
            push(value, &mut out);
            continue;
        }
        for iface in present {
            let hit = if value == AUTO {
                iface.up && !iface.loopback
            } else {
                glob(value.as_bytes(), iface.name.as_bytes())
            };
            if hit {
                push(&iface.name, &mut out);
            }
        }
    }
    if out.is_empty() {
        let names: Vec<&str> = present.iter().map(|i| i.name.as_str()).collect();
        return Err(IfaceError::NoMatch {
            value: values.join(","),
            present: names.join(","),
        });
    }
    Ok(out)
}

/// Shell-style match: `*` any run of characters, `?` one character.
fn glob(pat: &[u8], name: &[u8]) -> bool {
    // Iterative with one backtrack point: linear in practice, never recursive.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Every interface of the agent's network namespace (getifaddrs, so it is right inside
/// any namespace, unlike /sys/class/net, which shows the namespace sysfs was mounted in).
pub fn list() -> std::io::Result<Vec<Iface>> {
    let mut out: Vec<Iface> = Vec::new();
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
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated name owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let flags = ifa.ifa_flags as libc::c_int;
        let pos = match out.iter().position(|i| i.name == name) {
            Some(p) => p,
            None => {
                out.push(Iface {
                    name,
                    up: flags & libc::IFF_UP != 0,
                    loopback: flags & libc::IFF_LOOPBACK != 0,
                    ipv4: Vec::new(),
                });
                out.len() - 1
            }
        };
        // SAFETY: ifa_addr is checked non-null; the family is checked before the cast.
        if !ifa.ifa_addr.is_null()
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out[pos]
                .ipv4
                .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
    }
    // SAFETY: `head` came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, up: bool) -> Iface {
        Iface {
            name: name.into(),
            up,
            loopback: name == "lo",
            ipv4: Vec::new(),
        }
    }

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob(b"veth*", b"veth1234"));
        assert!(glob(b"veth*", b"veth"));
        assert!(!glob(b"veth*", b"eth0"));
        assert!(glob(b"e?h0", b"eth0"));
        assert!(!glob(b"e?h0", b"eh0"));
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"*0", b"eth0"));
        assert!(!glob(b"*0", b"eth1"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(glob(b"eth0", b"eth0"));
    }

    #[test]
    fn auto_takes_up_non_loopback_interfaces() {
        let here = [
            iface("lo", true),
            iface("eth0", true),
            iface("eth1", false),
            iface("veth9", true),
        ];
        assert_eq!(select(&v(&["auto"]), &here).unwrap(), ["eth0", "veth9"]);
    }

    #[test]
    fn patterns_and_names_mix_without_duplicates() {
        let here = [
            iface("lo", true),
            iface("eth0", true),
            iface("veth1", true),
            iface("veth2", true),
        ];
        assert_eq!(
            select(&v(&["eth0", "veth*", "eth*", "cni0"]), &here).unwrap(),
            ["eth0", "veth1", "veth2", "cni0"]
        );
        // A pattern with no match yet is fine while something else is selected.
        assert_eq!(select(&v(&["eth*", "cali*"]), &here).unwrap(), ["eth0"]);
    }

    #[test]
    fn nothing_selected_is_an_error_naming_what_exists() {
        let here = [iface("lo", true), iface("eth0", true)];
        let e = select(&v(&["wlan*"]), &here).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--iface \"wlan*\": no interface matches (interfaces here: lo,eth0)"
        );
        assert_eq!(
            select(&v(&["auto"]), &[iface("lo", true)])
                .unwrap_err()
                .to_string(),
            "--iface \"auto\": no interface matches (interfaces here: lo)"
        );
        assert!(matches!(
            select(&v(&[" "]), &here),
            Err(IfaceError::Empty(_))
        ));
    }

    #[test]
    fn list_sees_loopback() {
        let here = list().unwrap();
        let lo = here.iter().find(|i| i.name == "lo").expect("lo is listed");
        assert!(lo.loopback);
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST));
        assert!(
            !select(&v(&["auto"]), &here)
                .unwrap_or_default()
                .contains(&"lo".to_string())
        );
    }
}
