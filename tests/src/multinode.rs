//! Two nodes, each with its own pods and its own agent, linked to each other; external
//! clients attached to node A. All addresses are from 198.18.0.0/15 and exist only
//! inside these namespaces.
//!
//! ```text
//!  client  198.18.100.2 ─ext0─┐                        ┌─ node B 198.18.50.2
//!  client2 198.18.101.2 ─ext1─┤ node A 198.18.50.1 ─peer0─┤  pods 198.19.2.0/24
//!                             │  pods 198.19.1.0/24       │  (p1: 198.19.2.2, …)
//!                             └─ p1: 198.19.1.2, …        └─
//! ```
//!
//! Pods have /32 addresses and the node as gateway (198.19.N.1 on every pod link);
//! each node routes the other's pod CIDR through the peer link, and B routes everything
//! else (the clients) through A. Dropping [`TwoNodes`] stops the agents, removes their
//! pins, kills the servers, deletes the namespaces and the temporary directory.

use std::{
    io::{self, Read as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    agent::{Agent, AgentConfig, AgentSource},
    bpffs::PinDir,
    manifests::ManifestDir,
    netns::{NetNs, veth},
    process::Process,
    sandbox::{Bins, TempDir, ensure_root},
    stock::StockNode,
};

/// The external client (inside A's external subnet).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
/// A second external client, on its own link to A.
pub const CLIENT2_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 101, 2);
/// Node A's address towards the client (a NodePort address).
pub const A_EXT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const A_EXT2_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 101, 1);
/// The nodes' addresses on the link between them (NodePort addresses too).
pub const A_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 1);
pub const B_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 2);
/// Port of every pod's `--peer-tcp` and `--peer-udp` server.
pub const PEER_PORT: u16 = 9090;
const PEER_IF: &str = "peer0";
const INNER_IF: &str = "eth0";

/// One pod: `p<i>` on node N, address 198.19.N.(i+1).
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ns: NetNs,
}

/// A node namespace, its pods, and (once started) its agent.
pub struct Node {
    // Field order is drop order: agent, pins, servers, pods, node.
    agent: Option<Agent>,
    pins: PinDir,
    servers: Vec<Process>,
    pub pods: Vec<Pod>,
    /// Kubernetes node name (`node-a`, `node-b`), the agent's --hostname-override.
    pub name: String,
    pub ns: NetNs,
    /// Interfaces the agent attaches to.
    pub ifaces: Vec<String>,
    /// NodePort addresses.
    pub ips: Vec<Ipv4Addr>,
}

impl Node {
    fn new(bins: &Bins, name: &str, index: u8, pods: u8) -> Result<Self> {
        let ns = NetNs::new(name)?;
        // The RHEL family's strict rp_filter here (the single-node topology has systemd's
        // loose one): the agent must cope with both.
        StockNode::Rhel.apply(&ns)?;
        let pins = PinDir::new(&bins.agent, ns.name())?;
        let mut node = Node {
            agent: None,
            pins,
            servers: Vec::new(),
            pods: Vec::new(),
            name: name.to_owned(),
            ns,
            ifaces: Vec::new(),
            ips: Vec::new(),
        };
        let gateway = Ipv4Addr::new(198, 19, index, 1);
        for i in 1..=pods {
            let pod_name = format!("{}-p{i}", &name[name.len() - 1..]);
            let ip = Ipv4Addr::new(198, 19, index, i + 1);
            let pod_ns = NetNs::new(&pod_name)?;
            let node_if = format!("p{i}");
            veth(&node.ns, &node_if, &pod_ns, INNER_IF)?;
            node.ns
                .ip(&["addr", "add", &format!("{gateway}/32"), "dev", &node_if])?;
            node.ns
                .ip(&["route", "add", &format!("{ip}/32"), "dev", &node_if])?;
            pod_ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", INNER_IF])?;
            pod_ns.ip(&["route", "add", &gateway.to_string(), "dev", INNER_IF])?;
            pod_ns.ip(&["route", "add", "default", "via", &gateway.to_string()])?;
            // Receivers verify what the data path rewrote; pods keep offload on, as
            // real pods do.
            node.ns.tx_checksum_off(&node_if)?;
            node.ifaces.push(node_if);
            node.pods.push(Pod {
                name: pod_name,
                ip,
                ns: pod_ns,
            });
        }
        Ok(node)
    }

    pub fn pod(&self, i: u8) -> &Pod {
        &self.pods[usize::from(i) - 1]
    }

    pub fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("agents started")
    }

    pub fn agent_ref(&self) -> &Agent {
        self.agent.as_ref().expect("agents started")
    }

    fn start_servers(&mut self, bins: &Bins, tmp: &std::path::Path) -> Result<()> {
        for pod in &self.pods {
            let mut cmd = pod.ns.command(&bins.podserver.to_string_lossy())?;
            let port = PEER_PORT.to_string();
            cmd.args([
                "--name",
                &pod.name,
                "--peer-tcp",
                &port,
                "--peer-udp",
                &port,
            ]);
            let log = tmp.join(format!("{}.log", pod.name));
            self.servers.push(Process::spawn(
                format!("podserver {}", pod.name),
                cmd,
                &log,
            )?);
        }
        for server in &self.servers {
            server.wait_line("ready", Duration::from_secs(10))?;
        }
        Ok(())
    }
}

pub struct TwoNodes {
    pub a: Node,
    pub b: Node,
    pub client: NetNs,
    pub client2: NetNs,
    pub manifests: ManifestDir,
    bins: Bins,
    tmp: TempDir,
}

impl TwoNodes {
    /// Builds both nodes with `pods` pods each, the clients, and the pod servers.
    pub fn new(pods: u8) -> Result<Self> {
        ensure_root()?;
        anyhow::ensure!((1..=200).contains(&pods), "pods must be in 1..=200");
        let bins = Bins::locate()?;
        let tmp = TempDir::named("twonodes")?;
        let manifests = ManifestDir::create(tmp.path())?;
        let mut a = Node::new(&bins, "node-a", 1, pods)?;
        let mut b = Node::new(&bins, "node-b", 2, pods)?;

        veth(&a.ns, PEER_IF, &b.ns, PEER_IF)?;
        a.ns.ip(&["addr", "add", &format!("{A_LINK_IP}/24"), "dev", PEER_IF])?;
        b.ns.ip(&["addr", "add", &format!("{B_LINK_IP}/24"), "dev", PEER_IF])?;
        a.ns.ip(&[
            "route",
            "add",
            "198.19.2.0/24",
            "via",
            &B_LINK_IP.to_string(),
        ])?;
        b.ns.ip(&[
            "route",
            "add",
            "198.19.1.0/24",
            "via",
            &A_LINK_IP.to_string(),
        ])?;
        b.ns.ip(&["route", "add", "default", "via", &A_LINK_IP.to_string()])?;
        a.ns.tx_checksum_off(PEER_IF)?;
        b.ns.tx_checksum_off(PEER_IF)?;

        let client = NetNs::new("client")?;
        let client2 = NetNs::new("client2")?;
        for (ns, node_if, node_ip, ip) in [
            (&client, "ext0", A_EXT_IP, CLIENT_IP),
            (&client2, "ext1", A_EXT2_IP, CLIENT2_IP),
        ] {
            veth(&a.ns, node_if, ns, INNER_IF)?;
            a.ns.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", node_if])?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", INNER_IF])?;
            ns.ip(&["route", "add", "default", "via", &node_ip.to_string()])?;
            // client keeps veth's TX checksum offload (partial checksums, as a pod or a
            // VM's virtio NIC sends); client2 is a host behind a NIC (full checksums).
            if node_if == "ext1" {
                ns.tx_checksum_off(INNER_IF)?;
            }
            a.ns.tx_checksum_off(node_if)?;
            a.ifaces.push(node_if.to_owned());
        }
        a.ifaces.push(PEER_IF.to_owned());
        b.ifaces.push(PEER_IF.to_owned());
        a.ips = vec![A_EXT_IP, A_LINK_IP];
        b.ips = vec![B_LINK_IP];

        a.start_servers(&bins, tmp.path())?;
        b.start_servers(&bins, tmp.path())?;
        Ok(TwoNodes {
            a,
            b,
            client,
            client2,
            manifests,
            bins,
            tmp,
        })
    }

    /// Starts one agent per node on the same manifests, each with its own pins, node
    /// name and NodePort addresses, plus `a_args` / `b_args`; waits until both dump.
    pub fn start_agents(&mut self, a_args: &[&str], b_args: &[&str]) -> Result<()> {
        for (node, extra_args) in [(&mut self.a, a_args), (&mut self.b, b_args)] {
            let mut args: Vec<String> = vec!["--hostname-override".into(), node.name.clone()];
            for ip in &node.ips[1..] {
                args.extend(["--node-ip".into(), ip.to_string()]);
            }
            args.extend(extra_args.iter().map(|s| s.to_string()));
            let config = AgentConfig {
                bin: self.bins.agent.clone(),
                source: AgentSource::Manifests(self.manifests.path().to_owned()),
                ifaces: node.ifaces.clone(),
                node_ip: Some(node.ips[0]),
                bpffs: node.pins.path().to_owned(),
                log: self.tmp.path().join(format!("agent-{}.log", node.name)),
                extra_args: args,
                wrapper: Vec::new(),
                cgroup: None,
            };
            let agent = node.agent.insert(Agent::start(&node.ns, config)?);
            agent.wait_dump(
                &format!("{} agent startup", node.name),
                Duration::from_secs(20),
                |_| true,
            )?;
        }
        Ok(())
    }
}

/// What a client got from a `--peer-*` server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `(pod name, the source the pod saw)`.
    From(String, SocketAddrV4),
    /// TCP connection refused (a reset came back).
    Refused,
    /// Nothing came back in time.
    Silence,
}

impl Answer {
    fn parse(text: &str) -> Result<Self> {
        let (name, peer) = text
            .trim()
            .split_once(' ')
            .with_context(|| format!("bad answer {text:?}"))?;
        let peer: SocketAddr = peer
            .parse()
            .with_context(|| format!("bad peer in {text:?}"))?;
        let SocketAddr::V4(peer) = peer else {
            bail!("IPv6 peer in {text:?}")
        };
        Ok(Answer::From(name.to_owned(), peer))
    }

    /// The answering pod's name, if any.
    pub fn pod(&self) -> Option<&str> {
        match self {
            Answer::From(name, _) => Some(name),
            _ => None,
        }
    }
}

/// One TCP connection from inside `ns` to `target`; the answer line or how it failed.
pub fn tcp_ask(ns: &NetNs, target: SocketAddrV4, timeout: Duration) -> Result<Answer> {
    ns.in_thread(move || -> Result<Answer> {
        let mut s = match TcpStream::connect_timeout(&target.into(), timeout) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Answer::Refused),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Answer::Silence),
            Err(e) => return Err(e).with_context(|| format!("connect {target}")),
        };
        s.set_read_timeout(Some(timeout))?;
        let mut text = String::new();
        match s.read_to_string(&mut text) {
            Ok(_) => Answer::parse(&text),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(Answer::Silence)
            }
            Err(e) => Err(e).with_context(|| format!("read from {target}")),
        }
    })?
}

/// One datagram from a fresh socket inside `ns` to `target`; the answer or silence.
pub fn udp_ask(ns: &NetNs, target: SocketAddrV4, timeout: Duration) -> Result<Answer> {
    ns.in_thread(move || -> Result<Answer> {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.set_read_timeout(Some(timeout))?;
        s.send_to(b"who", target)?;
        let mut buf = [0u8; 512];
        match s.recv_from(&mut buf) {
            Ok((n, _)) => Answer::parse(&String::from_utf8_lossy(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(Answer::Silence)
            }
            // An ICMP port unreachable.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Answer::Refused),
            Err(e) => Err(e).with_context(|| format!("udp to {target}")),
        }
    })?
}
