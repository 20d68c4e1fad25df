//! `svclb-testapi`: runs the test apiserver until SIGINT/SIGTERM. The first stdout line is
//! `listening on ADDRESS`, so a parent process can read the port it got.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use svclb_testapi::{Config, Ipv4Cidr, TestApiServer};

#[derive(Debug, Parser)]
#[command(about = "In-memory Kubernetes apiserver for svclb tests (plain HTTP, no auth)")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for this server to FILE.
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
    /// Changes kept for watches to resume from; older versions get 410 Expired.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
    /// Interval of BOOKMARK events on watches that allow them, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    bookmark_interval_ms: u64,
    /// Range for cluster IPs of Services that leave spec.clusterIP unset.
    #[arg(long, default_value = "198.18.0.0/24")]
    service_cidr: Ipv4Cidr,
    /// Do not mirror hand-written Endpoints of selectorless Services into EndpointSlices
    /// (kube-controller-manager's mirroring controller runs by default).
    #[arg(long)]
    no_endpointslice_mirroring: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = Config {
        history: args.history,
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms.max(1)),
        service_cidr: args.service_cidr,
        mirroring: !args.no_endpointslice_mirroring,
        ..Config::default()
    };
    let server = TestApiServer::start_with(args.listen, config)
        .with_context(|| format!("starting the test apiserver on {}", args.listen))?;
    if let Some(path) = &args.kubeconfig_out {
        server
            .kubeconfig(path)
            .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.addr())?;
    out.flush()?;
    drop(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the signal runtime")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    server.shutdown();
    Ok(())
}
