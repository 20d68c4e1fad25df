//! The node's IPv4 sysctls the eBPF data path needs, set by the agent itself so it works
//! on a stock node (systemd's `rp_filter=2`, RHEL's `rp_filter=1`, `accept_local=0`).
//!
//! Replies are reverse-translated at TC ingress of the interface they arrive on (a pod's
//! veth), before the kernel's input route check, to a source that is the node's own
//! address (NodePort, source-NATed flows) or a ClusterIP:
//! - a local source is a martian unless `accept_local` is on for that interface (its
//!   effective value is `all || <iface>`, so setting the interface suffices);
//! - reverse-path filtering rejects it in strict mode (the route back to a ClusterIP or
//!   to the node's address is not that veth) and in loose mode too when nothing routes
//!   a ClusterIP. The effective `rp_filter` is `max(all, <iface>)`, so the interface's
//!   own 0 is not enough while `all` is above 0.
//!
//! `ip_forward` is the node's routing policy, not ours: it is only reported.
//!
//! [`plan`] decides (pure, unit-tested); [`ProcSys`] reads and writes `/proc/sys` (of the
//! agent's network namespace) and logs.
use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use tracing::{error, warn};

/// The `all` and `default` entries of `net/ipv4/conf`: not interfaces.
const ALL: &str = "all";
const DEFAULT: &str = "default";

/// One `net.ipv4.conf.<name>` entry: `rp_filter` and `accept_local`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfConf {
    pub rp_filter: u32,
    pub accept_local: u32,
}

/// What `net.ipv4.conf` holds: `all`, `default` and every interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConf {
    pub all: IfConf,
    pub default: IfConf,
    pub ifaces: BTreeMap<String, IfConf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    RpFilter,
    AcceptLocal,
}

impl Knob {
    fn file(self) -> &'static str {
        match self {
            Knob::RpFilter => "rp_filter",
            Knob::AcceptLocal => "accept_local",
        }
    }
}

/// One write: `net.ipv4.conf.<conf>.<knob>` from `old` to `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub conf: String,
    pub knob: Knob,
    pub old: u32,
    pub new: u32,
}

impl Write {
    pub fn key(&self) -> String {
        format!("net.ipv4.conf.{}.{}", self.conf, self.knob.file())
    }
}

/// `key: old → new, …` for a log line.
pub fn describe(writes: &[Write]) -> String {
    let parts: Vec<String> = writes.iter().map(Write::to_string).collect();
    parts.join(", ")
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.key(), self.old, self.new)
    }
}

/// The writes that give every `attached` interface (those in `conf.ifaces`) an effective
/// `rp_filter` of 0 and `accept_local` of 1, and leave every other interface's effective
/// values as they were. In the order they must be made: the others' own values are
/// raised before `all` drops, so no interface is ever less strict than it was.
pub fn plan(conf: &NetConf, attached: &[String]) -> Vec<Write> {
    let mut out = Vec::new();
    let is_attached = |name: &str| attached.iter().any(|a| a == name);
    if !conf.ifaces.keys().any(|name| is_attached(name)) {
        // Nothing of ours here: `all` stays as the node has it.
        return out;
    }
    let all_rp = conf.all.rp_filter;
    if all_rp > 0 {
        // `all` must go to 0 for an attached interface to reach effective 0. Every
        // other interface (and `default`, which interfaces created later start from)
        // takes over what `all` imposed on it: max(old all, own) is its effective value
        // before and after.
        let others = std::iter::once((DEFAULT, &conf.default)).chain(
            conf.ifaces
                .iter()
                .filter(|(name, _)| !is_attached(name))
                .map(|(name, c)| (name.as_str(), c)),
        );
        for (name, c) in others {
            if c.rp_filter < all_rp {
                out.push(Write {
                    conf: name.to_owned(),
                    knob: Knob::RpFilter,
                    old: c.rp_filter,
                    new: all_rp,
                });
            }
        }
    }
    for (name, c) in conf.ifaces.iter().filter(|(name, _)| is_attached(name)) {
        if c.rp_filter != 0 {
            out.push(Write {
                conf: name.clone(),
                knob: Knob::RpFilter,
                old: c.rp_filter,
                new: 0,
            });
        }
        if conf.all.accept_local == 0 && c.accept_local == 0 {
            out.push(Write {
                conf: name.clone(),
                knob: Knob::AcceptLocal,
                old: 0,
                new: 1,
            });
        }
    }
    if all_rp > 0 {
        out.push(Write {
            conf: ALL.to_owned(),
            knob: Knob::RpFilter,
            old: all_rp,
            new: 0,
        });
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a number: {text:?}")]
    Parse { path: PathBuf, text: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `/proc/sys` of the agent's network namespace (another root in tests).
#[derive(Clone, Debug)]
pub struct ProcSys {
    root: PathBuf,
}

impl Default for ProcSys {
    fn default() -> Self {
        ProcSys::new("/proc/sys")
    }
}

impl ProcSys {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcSys { root: root.into() }
    }

    fn conf_dir(&self) -> PathBuf {
        self.root.join("net/ipv4/conf")
    }

    fn read_u32(path: &Path) -> Result<u32, SysctlError> {
        let text = std::fs::read_to_string(path).map_err(|source| SysctlError::Read {
            path: path.to_owned(),
            source,
        })?;
        text.trim().parse().map_err(|_| SysctlError::Parse {
            path: path.to_owned(),
            text,
        })
    }

    fn read_conf(&self, name: &str) -> Result<IfConf, SysctlError> {
        let dir = self.conf_dir().join(name);
        Ok(IfConf {
            rp_filter: Self::read_u32(&dir.join("rp_filter"))?,
            accept_local: Self::read_u32(&dir.join("accept_local"))?,
        })
    }

    /// `all`, `default` and every interface of the namespace. An interface that goes
    /// away while it is read is left out.
    pub fn read(&self) -> Result<NetConf, SysctlError> {
        let dir = self.conf_dir();
        let entries = std::fs::read_dir(&dir).map_err(|source| SysctlError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut ifaces = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ALL || name == DEFAULT {
                continue;
            }
            match self.read_conf(&name) {
                Ok(c) => {
                    ifaces.insert(name, c);
                }
                Err(SysctlError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(NetConf {
            all: self.read_conf(ALL)?,
            default: self.read_conf(DEFAULT)?,
            ifaces,
        })
    }

    /// Makes the writes in order; returns those that took. A failed write (a read-only
    /// /proc/sys in an unprivileged container) is a warning naming the key.
    pub fn apply(&self, writes: &[Write]) -> Vec<Write> {
        let mut done = Vec::new();
        for w in writes {
            let path = self.conf_dir().join(&w.conf).join(w.knob.file());
            match std::fs::write(&path, format!("{}\n", w.new)) {
                Ok(()) => done.push(w.clone()),
                Err(e) => warn!(
                    key = w.key(),
                    old = w.old,
                    wanted = w.new,
                    error = %e,
                    "sysctl not set: the eBPF data path may drop replies on this node \
                     (is /proc/sys read-only? the DaemonSet mounts /proc/sys/net writable)"
                ),
            }
        }
        done
    }

    /// Reads, plans and applies for `attached`; returns the writes that took.
    pub fn ensure(&self, attached: &[String]) -> Vec<Write> {
        match self.read() {
            Ok(conf) => self.apply(&plan(&conf, attached)),
            Err(e) => {
                warn!(error = %e, "reading the node's sysctls; none set");
                Vec::new()
            }
        }
    }

    /// [`Self::ensure_route_localnet`] for the localhost NodePorts of the iptables and
    /// IPVS modes, saying in the log what changed or what will not answer.
    pub fn route_localnet_for_node_ports(&self) {
        match self.ensure_route_localnet() {
            Ok(true) => tracing::info!(
                "net.ipv4.conf.all.route_localnet: 0 → 1, for NodePorts on 127.0.0.1 \
                 (--iptables-localhost-nodeports=false turns them off)"
            ),
            Ok(false) => {}
            Err(e) => warn!(
                error = %e,
                "NodePorts on 127.0.0.1 will not answer (route_localnet not set)"
            ),
        }
    }

    /// `net.ipv4.conf.all.route_localnet=1`: the rule-based modes DNAT
    /// `127.0.0.1:<NodePort>` to a pod, and the kernel routes a 127.0.0.1 source off
    /// the node only with it (kube-proxy sets it the same way). True when it changed.
    pub fn ensure_route_localnet(&self) -> Result<bool, SysctlError> {
        let path = self.conf_dir().join(ALL).join("route_localnet");
        if Self::read_u32(&path)? != 0 {
            return Ok(false);
        }
        std::fs::write(&path, "1\n").map_err(|source| SysctlError::Write { path, source })?;
        Ok(true)
    }

    /// Whether the node forwards IPv4 (`net.ipv4.ip_forward`); logs an error when it
    /// does not. None when it cannot be read.
    pub fn check_ip_forward(&self) -> Option<bool> {
        let path = self.root.join("net/ipv4/ip_forward");
        match Self::read_u32(&path) {
            Ok(0) => {
                error!(
                    "net.ipv4.ip_forward is 0: packets to pods are not forwarded, so \
                     ClusterIPs from other pods and NodePorts/LoadBalancer IPs served by \
                     pods get no answer (only backends on the node's own addresses work); \
                     svclb does not change it: enable it on the node (sysctl -w \
                     net.ipv4.ip_forward=1), as the CNI plugin usually does"
                );
                Some(false)
            }
            Ok(_) => Some(true),
            Err(e) => {
                warn!(error = %e, "could not read net.ipv4.ip_forward");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(rp_filter: u32, accept_local: u32) -> IfConf {
        IfConf {
            rp_filter,
            accept_local,
        }
    }

    fn conf(all: IfConf, default: IfConf, ifaces: &[(&str, IfConf)]) -> NetConf {
        NetConf {
            all,
            default,
            ifaces: ifaces.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
        }
    }

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Effective values after applying `writes` to `conf`.
    fn after(conf: &NetConf, writes: &[Write]) -> NetConf {
        let mut out = conf.clone();
        for w in writes {
            let entry = match w.conf.as_str() {
                ALL => &mut out.all,
                DEFAULT => &mut out.default,
                name => out.ifaces.get_mut(name).unwrap(),
            };
            assert_eq!(
                match w.knob {
                    Knob::RpFilter => entry.rp_filter,
                    Knob::AcceptLocal => entry.accept_local,
                },
                w.old,
                "{w}"
            );
            match w.knob {
                Knob::RpFilter => entry.rp_filter = w.new,
                Knob::AcceptLocal => entry.accept_local = w.new,
            }
        }
        out
    }

    fn effective(conf: &NetConf, name: &str) -> (u32, bool) {
        let own = conf.ifaces[name];
        (
            conf.all.rp_filter.max(own.rp_filter),
            conf.all.accept_local != 0 || own.accept_local != 0,
        )
    }

    #[test]
    fn stock_debian_node_drops_all_and_keeps_the_others_loose() {
        // systemd: all=2, default=2; interfaces created later start at default.
        let before = conf(
            c(2, 0),
            c(2, 0),
            &[("lo", c(0, 0)), ("eth0", c(2, 0)), ("veth1", c(2, 0))],
        );
        let writes = plan(&before, &v(&["eth0", "veth1"]));
        let text: Vec<String> = writes.iter().map(Write::to_string).collect();
        assert_eq!(
            text,
            [
                "net.ipv4.conf.lo.rp_filter: 0 → 2",
                "net.ipv4.conf.eth0.rp_filter: 2 → 0",
                "net.ipv4.conf.eth0.accept_local: 0 → 1",
                "net.ipv4.conf.veth1.rp_filter: 2 → 0",
                "net.ipv4.conf.veth1.accept_local: 0 → 1",
                "net.ipv4.conf.all.rp_filter: 2 → 0",
            ]
        );
        let now = after(&before, &writes);
        assert_eq!(effective(&now, "eth0"), (0, true));
        assert_eq!(effective(&now, "veth1"), (0, true));
        assert_eq!(effective(&now, "lo"), effective(&before, "lo"));
        assert_eq!(now.default.rp_filter, 2);
        // Nothing left to do: a second run plans nothing.
        assert_eq!(plan(&now, &v(&["eth0", "veth1"])), []);
    }

    #[test]
    fn strict_all_is_kept_on_every_interface_not_attached() {
        // RHEL: all=1; one interface looser, one stricter (own 2 beats all 1).
        let before = conf(
            c(1, 0),
            c(0, 0),
            &[("eth0", c(0, 0)), ("eth1", c(2, 0)), ("pod1", c(0, 0))],
        );
        let writes = plan(&before, &v(&["pod1"]));
        let now = after(&before, &writes);
        for name in ["eth0", "eth1"] {
            assert_eq!(effective(&now, name), effective(&before, name), "{name}");
        }
        assert_eq!(effective(&now, "pod1"), (0, true));
        assert_eq!(now.default.rp_filter, 1, "new interfaces start strict");
        // The others are raised before all drops: never looser in between.
        let all_at = writes.iter().position(|w| w.conf == ALL).unwrap();
        assert_eq!(all_at, writes.len() - 1);
    }

    #[test]
    fn nothing_changes_on_a_node_that_already_fits() {
        let before = conf(c(0, 1), c(1, 0), &[("eth0", c(0, 0)), ("eth1", c(1, 0))]);
        assert_eq!(plan(&before, &v(&["eth0"])), []);
    }

    #[test]
    fn an_interface_attached_later_gets_its_own_values_only() {
        // After the start: all is 0, default holds what all had.
        let before = conf(
            c(0, 0),
            c(2, 0),
            &[("eth0", c(0, 1)), ("veth7", c(2, 0)), ("eth1", c(2, 0))],
        );
        let writes = plan(&before, &v(&["veth7"]));
        let text: Vec<String> = writes.iter().map(Write::to_string).collect();
        assert_eq!(
            text,
            [
                "net.ipv4.conf.veth7.rp_filter: 2 → 0",
                "net.ipv4.conf.veth7.accept_local: 0 → 1",
            ]
        );
    }

    #[test]
    fn without_an_attached_interface_nothing_is_touched() {
        let before = conf(c(2, 0), c(2, 0), &[("lo", c(0, 0)), ("eth0", c(2, 0))]);
        assert_eq!(plan(&before, &[]), []);
        assert_eq!(plan(&before, &v(&["gone0"])), []);
    }

    #[test]
    fn an_attached_name_that_is_not_there_is_skipped() {
        let before = conf(c(0, 0), c(0, 0), &[("eth0", c(0, 0))]);
        let writes = plan(&before, &v(&["gone0", "eth0"]));
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].conf, "eth0");
    }

    /// A scratch `/proc/sys` look-alike, removed on drop.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fake_proc(conf: &NetConf, ip_forward: u32) -> FakeProc {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = FakeProc(
            std::env::temp_dir().join(format!("svclb-sysctl-test-{}-{n}", std::process::id())),
        );
        let base = root.path().join("net/ipv4");
        let mut entries = vec![
            (ALL.to_owned(), conf.all),
            (DEFAULT.to_owned(), conf.default),
        ];
        entries.extend(conf.ifaces.iter().map(|(n, c)| (n.clone(), *c)));
        for (name, c) in entries {
            let dir = base.join("conf").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("rp_filter"), format!("{}\n", c.rp_filter)).unwrap();
            std::fs::write(dir.join("accept_local"), format!("{}\n", c.accept_local)).unwrap();
        }
        std::fs::write(base.join("ip_forward"), format!("{ip_forward}\n")).unwrap();
        root
    }

    #[test]
    fn proc_sys_reads_plans_and_writes_the_files() {
        let before = conf(c(2, 0), c(2, 0), &[("eth0", c(2, 0)), ("eth1", c(0, 0))]);
        let root = fake_proc(&before, 1);
        let sys = ProcSys::new(root.path());
        assert_eq!(sys.read().unwrap(), before);
        let done = sys.ensure(&v(&["eth0"]));
        assert_eq!(
            describe(&done),
            "net.ipv4.conf.eth1.rp_filter: 0 → 2, net.ipv4.conf.eth0.rp_filter: 2 → 0, \
             net.ipv4.conf.eth0.accept_local: 0 → 1, net.ipv4.conf.all.rp_filter: 2 → 0"
        );
        let now = sys.read().unwrap();
        assert_eq!(effective(&now, "eth0"), (0, true));
        assert_eq!(effective(&now, "eth1"), (2, false));
        assert_eq!(sys.check_ip_forward(), Some(true));
        let off = fake_proc(&before, 0);
        assert_eq!(ProcSys::new(off.path()).check_ip_forward(), Some(false));
    }

    #[test]
    fn a_write_that_fails_is_reported_and_the_rest_still_made() {
        let before = conf(c(0, 0), c(0, 0), &[("eth0", c(1, 0)), ("eth1", c(1, 0))]);
        let root = fake_proc(&before, 1);
        // A directory where the file should be: the write fails like a read-only one.
        let blocked = root.path().join("net/ipv4/conf/eth0/rp_filter");
        std::fs::remove_file(&blocked).unwrap();
        std::fs::create_dir(&blocked).unwrap();
        let sys = ProcSys::new(root.path());
        let writes = vec![
            Write {
                conf: "eth0".into(),
                knob: Knob::RpFilter,
                old: 1,
                new: 0,
            },
            Write {
                conf: "eth1".into(),
                knob: Knob::RpFilter,
                old: 1,
                new: 0,
            },
        ];
        let done = sys.apply(&writes);
        assert_eq!(done, writes[1..]);
    }
}
