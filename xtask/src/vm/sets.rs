//! Named selections of tests for the VMs (`--set NAME`): under TCG a guest runs 10-30×
//! slower than the host, so CI runs a chosen set per kernel, not the whole suite.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// (test target, libtest arguments) per set. Filters are substrings (libtest takes
/// several); one thread, as TCG leaves little to share.
fn set(name: &str) -> Result<Vec<(&'static str, Vec<&'static str>)>> {
    Ok(match name {
        // The eBPF data path on this kernel: every packet fixture, and real traffic for
        // the main promises (ClusterIP TCP/UDP from a pod, NodePort from outside, the
        // no-endpoint reject, an endpoint removal keeping established flows, an agent
        // restart under load, two-node source NAT, a node-local client).
        "smoke" => vec![
            ("packet_fixtures", vec!["--test-threads", "2"]),
            (
                "e2e",
                vec![
                    "--test-threads",
                    "1",
                    "ebpf::clusterip_from_pod_and_nodeport_from_external_client",
                    "ebpf::udp_through_clusterip",
                    "ebpf::service_without_endpoints_is_refused_fast",
                    "ebpf::removed_endpoint_gets_no_new_connections_but_keeps_established_ones",
                    "ebpf::agent_restart_does_not_interrupt_traffic",
                ],
            ),
            (
                "multinode",
                vec![
                    "--test-threads",
                    "1",
                    "external_policy_cluster_snats_to_the_node_towards_a_remote_endpoint",
                ],
            ),
            (
                "socket_lb",
                vec![
                    "--test-threads",
                    "1",
                    "ebpf::node_reaches_cluster_ip_over_tcp_and_udp",
                    "ebpf::service_without_endpoints_refuses_node_local_clients_at_once",
                ],
            ),
        ],
        // IPVS mode's scenarios (ignored on kernels without IP_VS, so included here).
        "ipvs" => vec![
            (
                "e2e",
                vec!["--test-threads", "1", "--include-ignored", "ipvs::"],
            ),
            (
                "socket_lb",
                vec!["--test-threads", "1", "--include-ignored", "ipvs::"],
            ),
            ("ipvs", vec!["--test-threads", "1", "--include-ignored"]),
            ("compat", vec!["--test-threads", "1", "ipvs"]),
        ],
        other => bail!("no test set {other} (smoke, ipvs)"),
    })
}

/// The plan of `name`: (label, executable, args); `extra` goes after each set's own.
pub fn plan(
    name: &str,
    bins: &[(String, PathBuf)],
    extra: &[String],
) -> Result<Vec<(String, PathBuf, Vec<String>)>> {
    set(name)?
        .into_iter()
        .map(|(target, args)| {
            let (_, exe) = bins
                .iter()
                .find(|(n, _)| n == target)
                .with_context(|| format!("set {name}: no test target {target}"))?;
            let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            all.extend(extra.iter().cloned());
            Ok((target.to_owned(), exe.clone(), all))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_name_real_targets_and_unknown_sets_fail() {
        let bins: Vec<(String, PathBuf)> = [
            "packet_fixtures",
            "e2e",
            "multinode",
            "socket_lb",
            "ipvs",
            "compat",
        ]
        .iter()
        .map(|n| (n.to_string(), PathBuf::from(format!("/t/{n}"))))
        .collect();
        let p = plan("smoke", &bins, &["--nocapture".into()]).unwrap();
        assert_eq!(p.len(), 4);
        assert!(p.iter().all(|(_, _, a)| a.last().unwrap() == "--nocapture"));
        assert_eq!(plan("ipvs", &bins, &[]).unwrap().len(), 4);
        assert!(plan("everything", &bins, &[]).is_err());
        assert!(
            plan("smoke", &bins[..1], &[]).is_err(),
            "a missing target is an error"
        );
    }
}
