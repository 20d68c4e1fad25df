//! Running the iptables tools: the only impure part of iptables mode.
use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use tracing::{debug, info};

use super::rules::{JUMPS, Table};

/// Which iptables implementation programs the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// iptables-nft: the same rules, kept in nf_tables.
    Nft,
    /// iptables-legacy: x_tables.
    Legacy,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Nft, Backend::Legacy];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    fn tool(self, suffix: &str) -> String {
        format!("iptables-{}{suffix}", self.as_str())
    }

    /// Whether the tools of this backend run here.
    pub fn available(self) -> bool {
        Command::new(self.tool("-save"))
            .args(["-t", "nat"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `iptables-save -t TABLE` (with packet counters when `counters`).
    pub fn save(self, table: Table, counters: bool) -> Result<String> {
        let mut cmd = Command::new(self.tool("-save"));
        cmd.args(["-t", table.as_str()]);
        if counters {
            cmd.arg("-c");
        }
        output(&mut cmd)
    }

    /// `iptables-restore --noflush` of `payload` (atomic per table).
    pub fn restore(self, payload: &str) -> Result<()> {
        let tool = self.tool("-restore");
        let mut child = Command::new(&tool)
            .args(["--noflush", "-w", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {tool} (is the iptables package installed?)"))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(payload.as_bytes())
            .with_context(|| format!("writing to {tool}"))?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed ({}): {}\npayload:\n{payload}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn rule(self, table: Table, op: &str, chain: &str, rule: &str) -> Result<bool> {
        let mut cmd = Command::new(self.tool(""));
        cmd.args(["-w", "5", "-t", table.as_str(), op, chain])
            .args(split_rule(rule));
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.tool("")))?;
        Ok(out.status.success())
    }

    /// Puts each jump from a built-in chain into ours first in that chain, once.
    pub fn ensure_jumps(self) -> Result<usize> {
        let mut added = 0;
        for (table, chain, rule) in JUMPS {
            if !self.rule(*table, "-C", chain, rule)? {
                if !self.rule(*table, "-I", chain, rule)? {
                    bail!(
                        "iptables-{}: cannot insert into {} {chain}: {rule}",
                        self.as_str(),
                        table.as_str()
                    );
                }
                added += 1;
            }
        }
        Ok(added)
    }

    /// Removes every jump from the built-in chains into ours.
    pub fn remove_jumps(self) -> Result<()> {
        for (table, chain, rule) in JUMPS {
            // Bounded: a rule inserted more than a few times is not ours to chase.
            for _ in 0..8 {
                if !self.rule(*table, "-D", chain, rule)? {
                    break;
                }
                debug!(table = table.as_str(), chain, "removed jump");
            }
        }
        Ok(())
    }
}

/// Splits a rule the way a shell would for our rules (double quotes group words).
pub fn split_rule(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in rule.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

fn output(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{what}: output is not UTF-8"))
}

/// Deletes the conntrack entries of the UDP flows to every endpoint that left between
/// `old` and `new` (iptables and IPVS modes): how many went.
pub fn purge_removed_udp(
    old: &crate::model::DesiredState,
    new: &crate::model::DesiredState,
) -> usize {
    let mut purged = 0;
    for (vip, backend) in crate::dataplane::removed_udp_endpoints(old, new) {
        match purge_udp(vip, backend) {
            Ok(n) => purged += n,
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "UDP flows of a removed endpoint stay until they time out"
            ),
        }
    }
    purged
}

/// Deletes the conntrack entries of UDP flows from `frontend` to `endpoint`, so they
/// move to a live endpoint (as kube-proxy does; TCP flows end on their own). Returns
/// how many were deleted; a missing `conntrack` tool is logged once per call site.
pub fn purge_udp(
    frontend: std::net::SocketAddrV4,
    endpoint: std::net::SocketAddrV4,
) -> Result<usize> {
    let out = Command::new("conntrack")
        .args(["-D", "-p", "udp", "--orig-dst"])
        .arg(frontend.ip().to_string())
        .arg("--orig-port-dst")
        .arg(frontend.port().to_string())
        .arg("--reply-src")
        .arg(endpoint.ip().to_string())
        .arg("--reply-port-src")
        .arg(endpoint.port().to_string())
        .output()
        .context("running conntrack (install the conntrack package)")?;
    // "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted."
    let text = String::from_utf8_lossy(&out.stderr);
    let deleted = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find(|(_, w)| *w == "flow")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    if !out.status.success() && deleted == 0 && !text.contains("0 flow entries") {
        bail!("conntrack -D failed ({}): {}", out.status, text.trim());
    }
    if deleted > 0 {
        info!(%frontend, %endpoint, deleted, "purged UDP conntrack entries of a removed endpoint");
    }
    Ok(deleted)
}
