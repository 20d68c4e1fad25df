//! Traffic for the end-to-end tests and the demo, run inside a namespace. Prints one JSON
//! [`ProbeReport`] line at the end.
//!
//! - `tcp`: `--count` new TCP connections, one `GET /` each (`Connection: close`).
//! - `udp`: `--count` datagrams, each from a new socket (a new flow).
//! - `resolver`: one connected UDP socket kept, as a stub resolver keeps it, a query
//!   every `--interval-ms` for `--duration-ms`; when the socket reports an error
//!   (closed under it, refused) it opens a new one and asks again at once. A query
//!   that gets no answer in `--timeout-ms` is lost (a failure); one answered after
//!   such a retry counts in `retried`.
//! - `hold`: one connection kept open, a request every `--interval-ms` for
//!   `--duration-ms`; prints `local ADDR:PORT` and `backend NAME` as soon as the first
//!   answer arrives, and stops
//!   at the first failure.
//!
//! Bounded: every request has `--timeout-ms`, the whole run `--deadline-ms`.

use std::{
    io::{self, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use svclb_tests::{
    http,
    report::{LatencyStats, ProbeReport, failure_kind},
};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// ADDR:PORT to probe.
    #[arg(long, global = true, default_value = "198.18.0.10:80")]
    target: SocketAddr,
    /// Per-request (connect, send, answer) timeout.
    #[arg(long, global = true, default_value_t = 1000)]
    timeout_ms: u64,
    /// Bound on the whole run.
    #[arg(long, global = true, default_value_t = 60_000)]
    deadline_ms: u64,
    /// UDP: send from this source port (0 = any), so successive runs are one flow.
    #[arg(long, global = true, default_value_t = 0)]
    sport: u16,
}

#[derive(Subcommand)]
enum Mode {
    Tcp {
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    Udp {
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// sendto/recvfrom on an unconnected socket (the answer's source must be the
        /// target) instead of connect/send/recv.
        #[arg(long)]
        unconnected: bool,
    },
    Resolver {
        #[arg(long, default_value_t = 50)]
        interval_ms: u64,
        #[arg(long, default_value_t = 3000)]
        duration_ms: u64,
    },
    Hold {
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long, default_value_t = 3000)]
        duration_ms: u64,
    },
}

/// Upper bound on `--count`.
const MAX_COUNT: u64 = 100_000;

/// One answer: backend name and, for HTTP, the port the pod served on.
struct Answer {
    backend: String,
    port: Option<u16>,
}

#[derive(Default)]
struct Tally {
    report: ProbeReport,
    ok_times: Vec<Duration>,
    fail_times: Vec<Duration>,
}

impl Tally {
    fn record(&mut self, started: Instant, result: io::Result<Answer>) {
        self.report.attempts += 1;
        match result {
            Ok(answer) => {
                self.report.ok += 1;
                *self.report.backends.entry(answer.backend).or_default() += 1;
                if let Some(port) = answer.port {
                    *self.report.ports.entry(port).or_default() += 1;
                }
                self.ok_times.push(started.elapsed());
            }
            Err(e) => {
                *self
                    .report
                    .failures
                    .entry(failure_kind(&e).to_owned())
                    .or_default() += 1;
                self.fail_times.push(started.elapsed());
            }
        }
    }

    fn finish(mut self) -> ProbeReport {
        self.report.latency_us = LatencyStats::of(&self.ok_times);
        self.report.failure_latency_us = LatencyStats::of(&self.fail_times);
        self.report
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let deadline = Instant::now() + Duration::from_millis(args.deadline_ms);
    let mut tally = Tally::default();
    tally.report.target = args.target.to_string();
    match args.mode {
        Mode::Tcp { count } | Mode::Udp { count, .. } if count > MAX_COUNT => {
            bail!("--count {count} is above the bound {MAX_COUNT}")
        }
        Mode::Tcp { count } => {
            tally.report.mode = "tcp".into();
            for _ in 0..count {
                if Instant::now() >= deadline {
                    break;
                }
                let started = Instant::now();
                tally.record(started, tcp_once(args.target, timeout));
            }
        }
        Mode::Udp { count, unconnected } => {
            tally.report.mode = "udp".into();
            for _ in 0..count {
                if Instant::now() >= deadline {
                    break;
                }
                let started = Instant::now();
                let result = if unconnected {
                    udp_unconnected_once(args.target, timeout, args.sport)
                } else {
                    udp_once(args.target, timeout, args.sport)
                };
                tally.record(started, result);
            }
        }
        Mode::Resolver {
            interval_ms,
            duration_ms,
        }
        | Mode::Hold {
            interval_ms,
            duration_ms,
        } => {
            type Run = fn(SocketAddr, Duration, Duration, Instant, &mut Tally);
            let (name, run): (&str, Run) = match args.mode {
                Mode::Resolver { .. } => ("resolver", resolver),
                _ => ("hold", hold),
            };
            tally.report.mode = name.into();
            let end = (Instant::now() + Duration::from_millis(duration_ms)).min(deadline);
            run(
                args.target,
                timeout,
                Duration::from_millis(interval_ms),
                end,
                &mut tally,
            );
        }
    }
    println!("{}", serde_json::to_string(&tally.finish())?);
    Ok(())
}

fn connect(target: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn request(
    stream: &mut TcpStream,
    host: &str,
    close: bool,
    pending: &mut Vec<u8>,
) -> io::Result<Answer> {
    http::write_get(stream, host, close)?;
    let answer = http::read_message(stream, pending)?.ok_or(io::ErrorKind::UnexpectedEof)?;
    if answer.status() != Some(200) {
        return Err(io::Error::other(format!(
            "unexpected answer: {}",
            answer.head
        )));
    }
    Ok(Answer {
        backend: String::from_utf8_lossy(&answer.body).trim().to_owned(),
        port: answer
            .header(http::SERVED_PORT_HEADER)
            .and_then(|p| p.parse().ok()),
    })
}

/// The socket must see the address it asked for as its peer, whatever the data path
/// did underneath (node-local sockets are pointed at a backend at connect time).
fn check_peer(peer: SocketAddr, target: SocketAddr) -> io::Result<()> {
    if peer != target {
        return Err(io::Error::other(format!(
            "peer is {peer}, not the target {target}"
        )));
    }
    Ok(())
}

fn tcp_once(target: SocketAddr, timeout: Duration) -> io::Result<Answer> {
    let mut stream = connect(target, timeout)?;
    check_peer(stream.peer_addr()?, target)?;
    request(&mut stream, &target.ip().to_string(), true, &mut Vec::new())
}

/// A UDP socket of the target's family (an IPv6 one for `[::ffff:a.b.c.d]`).
fn udp_socket(target: SocketAddr, sport: u16) -> io::Result<UdpSocket> {
    if target.is_ipv6() {
        UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, sport))
    } else {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, sport))
    }
}

fn udp_unconnected_once(target: SocketAddr, timeout: Duration, sport: u16) -> io::Result<Answer> {
    let socket = udp_socket(target, sport)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(b"ping", target)?;
    let mut buf = [0u8; 512];
    let (n, from) = socket.recv_from(&mut buf)?;
    check_peer(from, target)?;
    Ok(Answer {
        backend: String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
        port: None,
    })
}

fn resolver_socket(target: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let socket = udp_socket(target, 0)?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(timeout))?;
    Ok(socket)
}

fn query(socket: &UdpSocket) -> io::Result<Answer> {
    socket.send(b"ping")?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf)?;
    Ok(Answer {
        backend: String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
        port: None,
    })
}

fn resolver(
    target: SocketAddr,
    timeout: Duration,
    interval: Duration,
    end: Instant,
    tally: &mut Tally,
) {
    let mut socket = resolver_socket(target, timeout);
    loop {
        let started = Instant::now();
        let first = match &socket {
            Ok(s) => query(s),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let result = match first {
            // A timeout is a lost query: the resolver waited it out.
            Err(e) if failure_kind(&e) == "timeout" => Err(e),
            // The socket failed at once (closed under us, refused): a new one, ask again.
            Err(_) => {
                socket = resolver_socket(target, timeout);
                let again = socket
                    .as_ref()
                    .map_err(|e| io::Error::new(e.kind(), e.to_string()));
                let r = again.and_then(query);
                if r.is_ok() {
                    tally.report.retried += 1;
                }
                r
            }
            ok => ok,
        };
        tally.record(started, result);
        if Instant::now() + interval >= end {
            break;
        }
        thread::sleep(interval);
    }
}

fn udp_once(target: SocketAddr, timeout: Duration, sport: u16) -> io::Result<Answer> {
    let socket = udp_socket(target, sport)?;
    // Connected, so an ICMP port unreachable comes back as ECONNREFUSED.
    socket.connect(target)?;
    check_peer(socket.peer_addr()?, target)?;
    socket.set_read_timeout(Some(timeout))?;
    query(&socket)
}

fn hold(
    target: SocketAddr,
    timeout: Duration,
    interval: Duration,
    end: Instant,
    tally: &mut Tally,
) {
    let host = target.ip().to_string();
    let started = Instant::now();
    let mut stream = match connect(target, timeout) {
        Ok(stream) => stream,
        Err(e) => return tally.record(started, Err(e)),
    };
    let mut pending = Vec::new();
    let mut announced = false;
    loop {
        let started = Instant::now();
        let result = request(&mut stream, &host, false, &mut pending);
        let failed = result.is_err();
        if let Ok(answer) = &result
            && !announced
        {
            // The source port names the flow (`svclb-agent dump --flow`).
            if let Ok(local) = stream.local_addr() {
                println!("local {local}");
            }
            println!("backend {}", answer.backend);
            let _ = io::stdout().flush();
            announced = true;
        }
        tally.record(started, result);
        if failed || Instant::now() + interval >= end {
            break;
        }
        thread::sleep(interval);
    }
}
