//! Per-packet cost of the data path through BPF_PROG_TEST_RUN (no NIC, no stack): TC
//! and XDP, for a new flow, an established flow, a reply and a miss, with N services
//! in the maps, and the no-op XDP program measured in the same run as the floor.
//!
//! `pktbench [--services 1,1000,10000,100000] [--repeat 10000] [--reps 5] [--json OUT]`
//! Needs root. Maps are the object's own (ABI capacities), unpinned.
//!
//! Method. The kernel runs the program `--repeat` times on one buffer and reports the
//! mean time per run; that is one sample, and `--reps` samples give min/median/max.
//! Samples are taken repetition-major (one of each case, then the next round), so the
//! i-th samples of all cases are close in time and `samples_ns[i]` can be paired with
//! the no-op's for a ratio that shared-machine drift does not skew.
//! Because every run sees the previous run's output, each case is arranged so that
//! every run takes the path it claims, and the verdict counters are checked after each
//! sample (the program must have counted exactly `repeat` of the claimed verdict):
//! - established: the bench service's only backend *is* its frontend address and port,
//!   so the DNATed packet hits the same service and conntrack entry again;
//! - reply: same trick in reverse: the reply entry's frontend is the backend, so the
//!   reverse-translated packet is again a tracked reply;
//! - new: the packet is a SYN|FIN, so the conntrack entry each run creates is marked
//!   closing, and the next run's SYN treats the tuple as a new flow: backend choice,
//!   two conntrack writes and the DNAT every time. (Its conntrack lookup finds the
//!   previous run's entry rather than missing; a hit and a miss cost about the same.)
//! - new_fresh: cross-check without that trick: `--repeat` distinct tuples, one run
//!   each (repeat = 1), mean of the kernel-reported durations; with repeat = 1 the
//!   kernel's timer overhead is not amortized, so compare with `noop_single`, the
//!   no-op program measured the same way.
//! - miss: to an address that is no frontend and no tracked reply: unchanged, so
//!   every run is a miss.
//!
//! Services are written with BPF_MAP_UPDATE_BATCH, cumulatively (1, then up to 1000,
//! …); each has two backends.
use std::{fs, net::Ipv4Addr, path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, ensure};
use clap::Parser;
use serde::Serialize;
use svclb_common::{
    Backend, COUNTER_NAMES, Counter, MAP_BACKENDS, MAP_SERVICES, MAP_SLOTS, PROTO_TCP, ServiceKey,
    ServiceValue, SlotKey,
};
use svclb_tests::packet::{
    build::{ACK, FIN, Pkt, SYN},
    harness::{Harness, Hook, PROG_XDP_NOOP, Service, Verdict, addr_be, service_key},
};

#[derive(Parser)]
#[command(about = "TestRun ns/packet of the svclb programs at N services")]
struct Args {
    /// Numbers of services to measure at (cumulative fill).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000,100000")]
    services: Vec<u32>,
    /// Kernel-side runs per sample (BPF_PROG_TEST_RUN repeat).
    #[arg(long, default_value_t = 10_000)]
    repeat: u32,
    /// Samples per case (min/median/max are over these).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Only these cases (default: all), e.g. to profile one path with perf.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Only these hooks (xdp, tc; default: both).
    #[arg(long, value_delimiter = ',')]
    hooks: Vec<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The measured service, outside the filler range (fillers use 198.18.0.0 + i).
const BENCH_VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 250, 10);
const BENCH_SVC_ID: u32 = 131_071;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 251, 2);
const NOWHERE: Ipv4Addr = Ipv4Addr::new(198, 19, 252, 1);
const BACKENDS_PER_SERVICE: u32 = 2;

#[derive(Serialize)]
struct Row {
    services: u32,
    hook: &'static str,
    case: &'static str,
    min_ns: u64,
    median_ns: u64,
    max_ns: u64,
    samples_ns: Vec<u64>,
}

#[derive(Serialize)]
struct Fill {
    services: u32,
    /// Time to batch-write the services added for this step.
    seconds: f64,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    repeat: u32,
    reps: usize,
    fills: Vec<Fill>,
    results: Vec<Row>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut steps = args.services.clone();
    steps.sort_unstable();
    steps.dedup();
    ensure!(
        steps.last().is_some_and(|n| *n < BENCH_SVC_ID),
        "at most {} services",
        BENCH_SVC_ID - 1
    );
    ensure!(args.reps > 0 && args.repeat > 0);
    for h in &args.hooks {
        ensure!(
            Hook::ALL.iter().any(|k| k.name() == h),
            "unknown hook {h:?}; the hooks are xdp, tc"
        );
    }
    for c in &args.cases {
        ensure!(
            CASES.iter().any(|k| k.name == c),
            "unknown case {c:?}; the cases are {:?}",
            CASES.iter().map(|k| k.name).collect::<Vec<_>>()
        );
    }

    let mut h = Harness::load_full().context("load the eBPF object (run as root)")?;
    install_bench_service(&mut h)?;
    let mut report = Report {
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        repeat: args.repeat,
        reps: args.reps,
        fills: Vec::new(),
        results: Vec::new(),
    };
    let mut filled = 0;
    let mut fresh = 0u32;
    for &n in &steps {
        let t = Instant::now();
        fill(&h, filled, n)?;
        report.fills.push(Fill {
            services: n,
            seconds: t.elapsed().as_secs_f64(),
        });
        filled = n;
        eprintln!("{n} services written in {:.3} s", t.elapsed().as_secs_f64());
        let chosen: Vec<(&Case, Hook)> = CASES
            .iter()
            .filter(|c| args.cases.is_empty() || args.cases.iter().any(|w| w == c.name))
            .flat_map(|c| c.hooks.iter().map(move |h| (c, *h)))
            .filter(|(_, h)| args.hooks.is_empty() || args.hooks.iter().any(|w| w == h.name()))
            .collect();
        // Repetition-major: every case's i-th sample is taken in the same pass, close in
        // time to the no-op's i-th sample, so a ratio to the no-op can be paired.
        let mut samples = vec![Vec::with_capacity(args.reps); chosen.len()];
        for _ in 0..args.reps {
            for ((case, hook), out) in chosen.iter().zip(&mut samples) {
                let ns = case
                    .sample(&h, *hook, args.repeat, &mut fresh)
                    .with_context(|| format!("{} {:?} at {n} services", case.name, hook))?;
                out.push(ns);
            }
        }
        for ((case, hook), samples) in chosen.into_iter().zip(samples) {
            report
                .results
                .push(row(n, hook_name(hook, case.name), case.name, samples));
        }
    }
    print_table(&report);
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A service whose single backend is its own frontend (see the module docs).
fn install_bench_service(h: &mut Harness) -> Result<()> {
    let me = std::net::SocketAddrV4::new(BENCH_VIP, 80);
    let svc = Service {
        vip: BENCH_VIP,
        port: 80,
        proto: PROTO_TCP,
        svc_id: BENCH_SVC_ID,
        flags: 0,
        affinity_timeout_s: 0,
        backends: vec![(u32::MAX - 1, me)],
    };
    h.install(&svc)
}

/// Writes filler services `from..to` (frontend 198.18.0.0 + i, port 80, TCP).
fn fill(h: &Harness, from: u32, to: u32) -> Result<()> {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let (mut bk, mut bv, mut sk, mut sv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut fk, mut fv) = (Vec::<ServiceKey>::new(), Vec::<ServiceValue>::new());
    for i in from..to {
        let svc_id = i + 1;
        for s in 0..BACKENDS_PER_SERVICE {
            let id = i * BACKENDS_PER_SERVICE + s + 1;
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + (id & 0xffff));
            bk.push(id);
            bv.push(Backend {
                addr_be: addr_be(addr),
                port_be: 8080u16.to_be(),
                proto: PROTO_TCP,
                flags: 0,
            });
            sk.push(SlotKey { svc_id, slot: s });
            sv.push(id);
        }
        fk.push(service_key(Ipv4Addr::from(base + i), 80, PROTO_TCP));
        fv.push(ServiceValue {
            svc_id,
            backend_count: BACKENDS_PER_SERVICE as u16,
            flags: 0,
            affinity_timeout_s: 0,
            kind: svclb_common::KIND_CLUSTER_IP,
            _pad: [0; 3],
        });
    }
    // Make-before-break order, as the agent does: backends, slots, then frontends.
    h.update_batch::<u32, Backend>(MAP_BACKENDS, &bk, &bv)?;
    h.update_batch::<SlotKey, u32>(MAP_SLOTS, &sk, &sv)?;
    h.update_batch::<ServiceKey, ServiceValue>(MAP_SERVICES, &fk, &fv)
}

struct Case {
    name: &'static str,
    hooks: &'static [Hook],
}

const BOTH: &[Hook] = &[Hook::Xdp, Hook::Tc];
const CASES: [Case; 7] = [
    Case {
        name: "noop",
        hooks: &[Hook::Xdp],
    },
    Case {
        name: "noop_single",
        hooks: &[Hook::Xdp],
    },
    Case {
        name: "new",
        hooks: BOTH,
    },
    Case {
        name: "new_fresh",
        hooks: BOTH,
    },
    Case {
        name: "established",
        hooks: BOTH,
    },
    Case {
        name: "reply",
        hooks: BOTH,
    },
    Case {
        name: "miss",
        hooks: BOTH,
    },
];

impl Case {
    /// One sample: mean ns per packet, after checking the program did what the case
    /// claims for every run.
    fn sample(&self, h: &Harness, hook: Hook, repeat: u32, fresh: &mut u32) -> Result<u64> {
        let to_svc = Pkt::tcp(CLIENT, 40000, BENCH_VIP, 80);
        let (prog, frame, expect): (&str, Vec<u8>, Option<Counter>) = match self.name {
            "noop" => (PROG_XDP_NOOP, to_svc.bytes(), None),
            "noop_single" => {
                return single_runs(h, PROG_XDP_NOOP, repeat.min(SINGLE_RUNS), fresh, None);
            }
            "new" => (
                hook.program(),
                to_svc.flags(SYN | FIN).bytes(),
                Some(Counter::FwdNew),
            ),
            "new_fresh" => {
                return single_runs(
                    h,
                    hook.program(),
                    repeat.min(SINGLE_RUNS),
                    fresh,
                    Some(Counter::FwdNew),
                );
            }
            "established" => {
                let pkt = Pkt::tcp(CLIENT, 40002, BENCH_VIP, 80)
                    .flags(ACK)
                    .payload(&[0; 64]);
                run_checked(h, hook.program(), &pkt.bytes(), 1, None)?; // creates the flow
                (hook.program(), pkt.bytes(), Some(Counter::FwdEstablished))
            }
            "reply" => {
                // Flow from the client at port 40001, then the backend's answer.
                let syn = Pkt::tcp(CLIENT, 40001, BENCH_VIP, 80);
                run_checked(h, hook.program(), &syn.bytes(), 1, None)?;
                (
                    hook.program(),
                    syn.reply(SYN | ACK).bytes(),
                    Some(Counter::Reply),
                )
            }
            "miss" => (
                hook.program(),
                Pkt::tcp(CLIENT, 40000, NOWHERE, 80).bytes(),
                Some(Counter::PassMiss),
            ),
            other => anyhow::bail!("unknown case {other}"),
        };
        run_checked(h, prog, &frame, repeat, expect)
    }
}

/// Runs `repeat` times in the kernel; checks the verdict and that `expect` moved by
/// exactly `repeat` and nothing else moved. Returns ns per run.
fn run_checked(
    h: &Harness,
    prog: &str,
    frame: &[u8],
    repeat: u32,
    expect: Option<Counter>,
) -> Result<u64> {
    let before = h.counters()?;
    let out = h.run_prog(prog, frame, repeat)?;
    ensure!(
        out.verdict == Verdict::Pass,
        "{prog}: verdict {:?}",
        out.verdict
    );
    if let Some(c) = expect {
        let moved = h.counters()?.since(&before);
        let want = [(COUNTER_NAMES[c as usize], u64::from(repeat))];
        ensure!(
            moved == want,
            "{prog}: counters moved {moved:?}, want {want:?}: the case measures something else"
        );
    }
    Ok(out.duration.as_nanos() as u64)
}

/// Single runs per sample of the `_single`/`_fresh` cases: one syscall each, and few
/// enough that all their flows fit in conntrack without evictions.
const SINGLE_RUNS: u32 = 2000;

/// `n` single runs on flows never seen before (`fresh` numbers them across the whole
/// benchmark); mean of the kernel-reported per-run durations.
fn single_runs(
    h: &Harness,
    prog: &str,
    n: u32,
    fresh: &mut u32,
    expect: Option<Counter>,
) -> Result<u64> {
    let mut total = 0u64;
    let before = h.counters()?;
    for _ in 0..n {
        *fresh += 1;
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 253, 0)) + (*fresh >> 15));
        let frame = Pkt::tcp(src, 1024 + (*fresh & 0x7fff) as u16, BENCH_VIP, 80).bytes();
        let out = h.run_prog(prog, &frame, 1)?;
        ensure!(
            out.verdict == Verdict::Pass,
            "{prog}: verdict {:?}",
            out.verdict
        );
        total += out.duration.as_nanos() as u64;
    }
    if let Some(c) = expect {
        let moved = h.counters()?.since(&before);
        let want = [(COUNTER_NAMES[c as usize], u64::from(n))];
        ensure!(
            moved == want,
            "{prog}: counters moved {moved:?}, want {want:?}"
        );
    }
    Ok(total / u64::from(n))
}

fn hook_name(hook: Hook, case: &str) -> &'static str {
    match (hook, case) {
        (_, "noop" | "noop_single") => "xdp_noop",
        (Hook::Xdp, _) => "xdp",
        (Hook::Tc, _) => "tc",
    }
}

fn row(services: u32, hook: &'static str, case: &'static str, mut samples: Vec<u64>) -> Row {
    let raw = samples.clone();
    samples.sort_unstable();
    Row {
        services,
        hook,
        case,
        min_ns: samples[0],
        median_ns: samples[samples.len() / 2],
        max_ns: samples[samples.len() - 1],
        samples_ns: raw,
    }
}

fn print_table(r: &Report) {
    println!(
        "kernel {}, {} runs per sample, {} samples; ns/packet min / median / max",
        r.kernel, r.repeat, r.reps
    );
    println!(
        "{:>9}  {:<9} {:<12} {:>6} {:>7} {:>6}",
        "services", "program", "case", "min", "median", "max"
    );
    for row in &r.results {
        println!(
            "{:>9}  {:<9} {:<12} {:>6} {:>7} {:>6}",
            row.services, row.hook, row.case, row.min_ns, row.median_ns, row.max_ns
        );
    }
}
