//! Runs the real eBPF object (`svclb_agent::EBPF_OBJECT`) through BPF_PROG_TEST_RUN.
//! Maps are created by the load and owned by the harness: nothing is pinned, so tests
//! run in parallel without touching bpffs or each other.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{Program, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use svclb_agent::dataplane::ebpf::features::{Choice, Features};
use svclb_common::{
    AffinityKey, AffinityValue, Backend, COUNTER_COUNT, COUNTER_NAMES, Counter, CtKey, CtValue,
    GLOBAL_FEATURES, IfaceInfo, MAP_AFFINITY, MAP_BACKENDS, MAP_CONNTRACK, MAP_COUNTERS,
    MAP_IFACES, MAP_SERVICES, MAP_SLOTS, MAP_SVC_STATS, PROG_TC, PROG_XDP, ServiceKey,
    ServiceValue, SlotKey, SvcStats,
};

/// The no-op XDP program, the floor of benchmarks.
pub const PROG_XDP_NOOP: &str = "svclb_xdp_noop";

/// Capacities for fixture tests: big enough for every test, small enough that many
/// harnesses load fast in parallel (the ABI's SLOTS and BACKENDS preallocate 1M
/// entries each).
pub const FIXTURE_SIZES: [(&str, u32); 5] = [
    (MAP_SERVICES, 4096),
    (MAP_SLOTS, 65_536),
    (MAP_BACKENDS, 65_536),
    (MAP_CONNTRACK, 65_536),
    (MAP_AFFINITY, 4096),
];

/// Where a program is attached in production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Tc,
    Xdp,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Tc, Hook::Xdp];

    /// As in the benchmark's output and command line.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Tc => "tc",
            Hook::Xdp => "xdp",
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Hook::Tc => PROG_TC,
            Hook::Xdp => PROG_XDP,
        }
    }
}

/// What the program told the kernel to do, whatever the hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// TC_ACT_OK / XDP_PASS.
    Pass,
    /// TC_ACT_SHOT / XDP_DROP.
    Drop,
    /// Sent back out of the ingress interface: TC_ACT_REDIRECT / XDP_TX.
    Reject,
    Other(u32),
}

impl Verdict {
    fn from_ret(hook: Hook, ret: u32) -> Self {
        match (hook, ret) {
            (Hook::Tc, 0) | (Hook::Xdp, 2) => Verdict::Pass,
            (Hook::Tc, 2) | (Hook::Xdp, 1) => Verdict::Drop,
            (Hook::Tc, 7) | (Hook::Xdp, 3) => Verdict::Reject,
            (_, r) => Verdict::Other(r),
        }
    }
}

/// One test run: verdict, output frame and the kernel-measured duration per run.
#[derive(Debug)]
pub struct Output {
    pub verdict: Verdict,
    pub ret: u32,
    pub data: Vec<u8>,
    pub duration: Duration,
}

/// A Service as the tests describe it: one frontend and its backends, slot i holding
/// the i-th backend.
#[derive(Clone, Debug)]
pub struct Service {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
    pub svc_id: u32,
    pub flags: u16,
    pub affinity_timeout_s: u32,
    /// (backend id, address).
    pub backends: Vec<(u32, SocketAddrV4)>,
}

impl Service {
    pub fn key(&self) -> ServiceKey {
        service_key(self.vip, self.port, self.proto)
    }

    pub fn value(&self, backend_count: u16) -> ServiceValue {
        ServiceValue {
            svc_id: self.svc_id,
            backend_count,
            flags: self.flags,
            affinity_timeout_s: self.affinity_timeout_s,
            kind: svclb_common::KIND_CLUSTER_IP,
            _pad: [0; 3],
        }
    }

    pub fn backend(&self, id: u32) -> SocketAddrV4 {
        self.backends
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| *a)
            .expect("backend of this service")
    }
}

pub fn addr_be(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

pub fn addr_of_be(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_ne_bytes())
}

pub fn service_key(vip: Ipv4Addr, port: u16, proto: u8) -> ServiceKey {
    ServiceKey {
        addr_be: addr_be(vip),
        port_be: port.to_be(),
        proto,
        scope: 0,
    }
}

pub fn backend_value(a: SocketAddrV4, proto: u8) -> Backend {
    Backend {
        addr_be: addr_be(*a.ip()),
        port_be: a.port().to_be(),
        proto,
        flags: 0,
    }
}

/// The conntrack key of a packet from `src` to `dst` (either direction's entry).
pub fn ct_key(src: SocketAddrV4, dst: SocketAddrV4, proto: u8) -> CtKey {
    CtKey::new(
        addr_be(*src.ip()),
        addr_be(*dst.ip()),
        src.port().to_be(),
        dst.port().to_be(),
        proto,
    )
}

/// CLOCK_MONOTONIC in ns: the data path's clock (the coarse variant, a tick or two
/// behind this).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Summed per-CPU verdict counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTER_COUNT as usize]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// The counters that moved since `before`, by name, in index order.
    pub fn since(&self, before: &Counters) -> Vec<(&'static str, u64)> {
        (0..COUNTER_COUNT as usize)
            .filter(|&i| self.0[i] != before.0[i])
            .map(|i| (COUNTER_NAMES[i], self.0[i].wrapping_sub(before.0[i])))
            .collect()
    }
}

pub struct Harness {
    bpf: Ebpf,
}

impl Harness {
    /// Loads with [`FIXTURE_SIZES`].
    pub fn load() -> Result<Self> {
        Self::load_sized(&FIXTURE_SIZES)
    }

    /// Loads with [`FIXTURE_SIZES`] and the feature variants of `choice`.
    pub fn load_with(choice: Choice) -> Result<Self> {
        Self::load_sized_with(&FIXTURE_SIZES, choice)
    }

    /// Loads with the capacities the object declares (the ABI's).
    pub fn load_full() -> Result<Self> {
        Self::load_sized(&[])
    }

    pub fn load_sized(sizes: &[(&str, u32)]) -> Result<Self> {
        Self::load_sized_with(sizes, Choice::Probe)
    }

    pub fn load_sized_with(sizes: &[(&str, u32)], choice: Choice) -> Result<Self> {
        // The variants the agent would choose (probed once per test process).
        static PROBED: OnceLock<Features> = OnceLock::new();
        svclb_agent::memlock::raise();
        let features = match choice {
            Choice::Probe => *PROBED.get_or_init(Features::probe),
            Choice::Baseline => Features::BASELINE,
        };
        let bits = features.bits();
        let mut loader = EbpfLoader::new();
        for (name, size) in sizes {
            loader.map_max_entries(name, *size);
        }
        loader.override_global(GLOBAL_FEATURES, &bits, true);
        let mut bpf = loader
            .load(svclb_agent::EBPF_OBJECT)
            .context("load the eBPF object (root needed)")?;
        let tc: &mut SchedClassifier = bpf
            .program_mut(PROG_TC)
            .context("no TC program")?
            .try_into()?;
        tc.load().with_context(|| format!("verify {PROG_TC}"))?;
        for name in [PROG_XDP, PROG_XDP_NOOP] {
            let xdp: &mut Xdp = bpf
                .program_mut(name)
                .with_context(|| format!("no {name}"))?
                .try_into()?;
            xdp.load().with_context(|| format!("verify {name}"))?;
        }
        Ok(Harness { bpf })
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.bpf
    }

    /// Runs the program of `hook` once on `frame`.
    pub fn run(&self, hook: Hook, frame: &[u8]) -> Result<Output> {
        self.run_prog(hook.program(), frame, 1)
    }

    /// Runs a program by name `repeat` times on `frame` (each run sees the previous
    /// run's output: the kernel reuses the buffer).
    pub fn run_prog(&self, name: &str, frame: &[u8], repeat: u32) -> Result<Output> {
        let prog = self
            .bpf
            .program(name)
            .with_context(|| format!("no program {name}"))?;
        // Room for a reject that is longer than the input.
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..Default::default()
        };
        let (hook, r) = match prog {
            Program::SchedClassifier(p) => (Hook::Tc, p.test_run(opts)),
            Program::Xdp(p) => (Hook::Xdp, p.test_run(opts)),
            _ => bail!("{name} is neither TC nor XDP"),
        };
        let r = r.with_context(|| format!("BPF_PROG_TEST_RUN {name}"))?;
        out.truncate(r.data_size_out as usize);
        Ok(Output {
            verdict: Verdict::from_ret(hook, r.return_value),
            ret: r.return_value,
            data: out,
            duration: r.duration,
        })
    }

    fn map_data(&self, name: &str) -> Result<&MapData> {
        match self
            .bpf
            .map(name)
            .with_context(|| format!("no map {name}"))?
        {
            Map::HashMap(d) | Map::LruHashMap(d) | Map::PerCpuArray(d) | Map::Array(d) => Ok(d),
            _ => bail!("map {name} has an unexpected type"),
        }
    }

    pub fn hash<K: Pod, V: Pod>(&self, name: &str) -> Result<HashMap<&MapData, K, V>> {
        Ok(HashMap::try_from(
            self.bpf
                .map(name)
                .with_context(|| format!("no map {name}"))?,
        )?)
    }

    pub fn hash_mut<K: Pod, V: Pod>(&mut self, name: &str) -> Result<HashMap<&mut MapData, K, V>> {
        Ok(HashMap::try_from(
            self.bpf
                .map_mut(name)
                .with_context(|| format!("no map {name}"))?,
        )?)
    }

    /// Writes the service's backends, its slots 0..n and its frontend.
    pub fn install(&mut self, s: &Service) -> Result<()> {
        for (id, a) in &s.backends {
            self.put_backend(*id, backend_value(*a, s.proto))?;
        }
        let ids: Vec<u32> = s.backends.iter().map(|(id, _)| *id).collect();
        self.set_slots(s, &ids)
    }

    /// Makes the service's slots exactly `ids` (and its backend count their number).
    pub fn set_slots(&mut self, s: &Service, ids: &[u32]) -> Result<()> {
        let mut slots = self.hash_mut::<SlotKey, u32>(MAP_SLOTS)?;
        for (i, id) in ids.iter().enumerate() {
            slots.insert(
                SlotKey {
                    svc_id: s.svc_id,
                    slot: i as u32,
                },
                id,
                0,
            )?;
        }
        for i in ids.len() as u32..s.backends.len().max(ids.len()) as u32 {
            let _ = slots.remove(&SlotKey {
                svc_id: s.svc_id,
                slot: i,
            });
        }
        self.put_service(s.key(), s.value(ids.len() as u16))
    }

    pub fn put_service(&mut self, k: ServiceKey, v: ServiceValue) -> Result<()> {
        Ok(self
            .hash_mut::<ServiceKey, ServiceValue>(MAP_SERVICES)?
            .insert(k, v, 0)?)
    }

    pub fn put_slot(&mut self, svc_id: u32, slot: u32, backend_id: u32) -> Result<()> {
        Ok(self.hash_mut::<SlotKey, u32>(MAP_SLOTS)?.insert(
            SlotKey { svc_id, slot },
            backend_id,
            0,
        )?)
    }

    pub fn put_backend(&mut self, id: u32, b: Backend) -> Result<()> {
        Ok(self
            .hash_mut::<u32, Backend>(MAP_BACKENDS)?
            .insert(id, b, 0)?)
    }

    /// An interface table entry, as the agent writes one for every node interface.
    pub fn put_iface(&mut self, ifindex: u32, info: IfaceInfo) -> Result<()> {
        Ok(self
            .hash_mut::<u32, IfaceInfo>(MAP_IFACES)?
            .insert(ifindex, info, 0)?)
    }

    /// Adds `addr/len` to the `loadBalancerSourceRanges` allow-list of `svc_id`.
    pub fn put_src_range(&mut self, svc_id: u32, addr: Ipv4Addr, len: u8) -> Result<()> {
        let (mut trie, key) = self.src_range(svc_id, addr, len)?;
        Ok(trie.insert(&key, 0, 0)?)
    }

    pub fn remove_src_range(&mut self, svc_id: u32, addr: Ipv4Addr, len: u8) -> Result<()> {
        let (mut trie, key) = self.src_range(svc_id, addr, len)?;
        Ok(trie.remove(&key)?)
    }

    #[allow(clippy::type_complexity)]
    fn src_range(
        &mut self,
        svc_id: u32,
        addr: Ipv4Addr,
        len: u8,
    ) -> Result<(
        aya::maps::LpmTrie<&mut aya::maps::MapData, svclb_common::SrcRangeKey, u8>,
        aya::maps::lpm_trie::Key<svclb_common::SrcRangeKey>,
    )> {
        let map = self
            .bpf
            .map_mut(svclb_common::MAP_SRC_RANGES)
            .context("no source ranges map")?;
        let trie = aya::maps::LpmTrie::<_, svclb_common::SrcRangeKey, u8>::try_from(map)?;
        let key = aya::maps::lpm_trie::Key::new(
            32 + u32::from(len),
            svclb_common::SrcRangeKey {
                svc_id,
                addr_be: addr_be(addr),
            },
        );
        Ok((trie, key))
    }

    pub fn remove_backend(&mut self, id: u32) -> Result<()> {
        Ok(self.hash_mut::<u32, Backend>(MAP_BACKENDS)?.remove(&id)?)
    }

    pub fn ct(&self, k: &CtKey) -> Result<Option<CtValue>> {
        match self.hash::<CtKey, CtValue>(MAP_CONNTRACK)?.get(k, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn ct_entries(&self) -> Result<Vec<(CtKey, CtValue)>> {
        Ok(self
            .hash::<CtKey, CtValue>(MAP_CONNTRACK)?
            .iter()
            .collect::<Result<_, _>>()?)
    }

    pub fn ct_remove(&mut self, k: &CtKey) -> Result<()> {
        Ok(self.hash_mut::<CtKey, CtValue>(MAP_CONNTRACK)?.remove(k)?)
    }

    pub fn affinity(&self, client: Ipv4Addr, svc_id: u32) -> Result<Option<AffinityValue>> {
        let k = AffinityKey {
            client_addr_be: addr_be(client),
            svc_id,
        };
        match self
            .hash::<AffinityKey, AffinityValue>(MAP_AFFINITY)?
            .get(&k, 0)
        {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_affinity(&mut self, client: Ipv4Addr, svc_id: u32, v: AffinityValue) -> Result<()> {
        let k = AffinityKey {
            client_addr_be: addr_be(client),
            svc_id,
        };
        Ok(self
            .hash_mut::<AffinityKey, AffinityValue>(MAP_AFFINITY)?
            .insert(k, v, 0)?)
    }

    pub fn counters(&self) -> Result<Counters> {
        let m = PerCpuArray::<_, u64>::try_from(
            self.bpf.map(MAP_COUNTERS).context("no counters map")?,
        )?;
        let mut c = Counters::default();
        for i in 0..COUNTER_COUNT {
            c.0[i as usize] = m.get(&i, 0)?.iter().sum();
        }
        Ok(c)
    }

    pub fn svc_stats(&self, svc_id: u32) -> Result<SvcStats> {
        let m = PerCpuArray::<_, SvcStats>::try_from(
            self.bpf.map(MAP_SVC_STATS).context("no stats map")?,
        )?;
        Ok(m.get(&svc_id, 0)?
            .iter()
            .fold(SvcStats::default(), |a, s| SvcStats {
                packets: a.packets + s.packets,
                bytes: a.bytes + s.bytes,
            }))
    }

    /// Writes many entries with BPF_MAP_UPDATE_BATCH (one syscall per few thousand
    /// entries instead of one per entry). aya 0.14 has no batch API.
    pub fn update_batch<K: Pod, V: Pod>(&self, map: &str, keys: &[K], values: &[V]) -> Result<()> {
        anyhow::ensure!(
            keys.len() == values.len(),
            "{} keys, {} values",
            keys.len(),
            values.len()
        );
        let entries: Vec<(K, V)> = keys.iter().copied().zip(values.iter().copied()).collect();
        svclb_agent::dataplane::ebpf::batch::update(self.map_data(map)?, &entries)
            .with_context(|| format!("batch update of {map}"))
    }
}
