//! A test pod: answers HTTP `GET` on every `--tcp` port with its name (plus a newline)
//! and echoes its name to every UDP datagram on the `--udp` ports. Prints `ready` on
//! stdout once every socket is bound. Exits by itself after `--max-seconds`.
//!
//! `--peer-tcp` / `--peer-udp` ports answer `NAME PEER_ADDR:PEER_PORT` (a line on TCP,
//! then close; a datagram on UDP): what source the pod saw, for SNAT and client-IP
//! preservation tests.

use std::{
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Parser;
use svclb_tests::http;

#[derive(Parser)]
struct Args {
    /// The name to answer with.
    #[arg(long)]
    name: String,
    /// TCP ports to serve HTTP on.
    #[arg(long, value_delimiter = ',')]
    tcp: Vec<u16>,
    /// UDP ports to echo the name on.
    #[arg(long, value_delimiter = ',')]
    udp: Vec<u16>,
    /// TCP ports that answer every connection with the name and the peer address.
    #[arg(long, value_delimiter = ',')]
    peer_tcp: Vec<u16>,
    /// UDP ports that answer every datagram with the name and the peer address.
    #[arg(long, value_delimiter = ',')]
    peer_udp: Vec<u16>,
    /// Lifetime bound, in case the harness that started it is gone.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
}

/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let args = Args::parse();
    let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    for &port in &args.tcp {
        let listener = TcpListener::bind(any(port)).with_context(|| format!("bind tcp {port}"))?;
        let name = args.name.clone();
        thread::spawn(move || serve_tcp(listener, name, port));
    }
    for &port in &args.udp {
        let socket = UdpSocket::bind(any(port)).with_context(|| format!("bind udp {port}"))?;
        let name = args.name.clone();
        thread::spawn(move || serve_udp(socket, name));
    }
    for &port in &args.peer_tcp {
        let listener = TcpListener::bind(any(port)).with_context(|| format!("bind tcp {port}"))?;
        let name = args.name.clone();
        thread::spawn(move || serve_peer_tcp(listener, name));
    }
    for &port in &args.peer_udp {
        let socket = UdpSocket::bind(any(port)).with_context(|| format!("bind udp {port}"))?;
        let name = args.name.clone();
        thread::spawn(move || serve_peer_udp(socket, name));
    }
    println!("ready");
    thread::sleep(Duration::from_secs(args.max_seconds));
    Ok(())
}

fn serve_tcp(listener: TcpListener, name: String, port: u16) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = name.clone();
        thread::spawn(move || {
            if let Err(e) = serve_connection(stream, &name, port) {
                eprintln!("{name}: tcp {port}: {e}");
            }
        });
    }
}

fn serve_connection(mut stream: TcpStream, name: &str, port: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut pending = Vec::new();
    while let Some(request) = http::read_message(&mut stream, &mut pending)? {
        let close = request.wants_close();
        http::write_answer(&mut stream, name, port, close)?;
        if close {
            break;
        }
    }
    Ok(())
}

fn serve_udp(socket: UdpSocket, name: String) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((_, peer)) => {
                if let Err(e) = socket.send_to(name.as_bytes(), peer) {
                    eprintln!("{name}: udp reply to {peer}: {e}");
                }
            }
            Err(e) => {
                eprintln!("{name}: udp recv: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn serve_peer_tcp(listener: TcpListener, name: String) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if let Err(e) = writeln!(stream, "{name} {peer}") {
            eprintln!("{name}: peer tcp to {peer}: {e}");
        }
    }
}

fn serve_peer_udp(socket: UdpSocket, name: String) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((_, peer)) => {
                if let Err(e) = socket.send_to(format!("{name} {peer}").as_bytes(), peer) {
                    eprintln!("{name}: peer udp reply to {peer}: {e}");
                }
            }
            Err(e) => {
                eprintln!("{name}: peer udp recv: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
