//! `spec.loadBalancerSourceRanges`: the sources a LoadBalancer Service's ingress
//! addresses accept. kube-proxy applies it to load-balancer IPs only.
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::ServiceSpec;
use tracing::debug;

use super::errors::{ErrorKind, Invalid, PlanError};

/// The IPv4 prefixes (host bits cleared, as Go's ParseCIDR does), or `None` when the
/// field is unset or empty (every source allowed). A bad entry is reported and skipped;
/// the list stays an allow-list, so a Service whose entries are all bad (or all IPv6)
/// lets no IPv4 source in rather than every source.
pub(crate) fn parse(
    spec: &ServiceSpec,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Option<Vec<(Ipv4Addr, u8)>> {
    let texts = spec
        .load_balancer_source_ranges
        .as_ref()
        .filter(|r| !r.is_empty())?;
    let mut out = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        match cidr(text.trim()) {
            Ok(Some(prefix)) => out.push(prefix),
            Ok(None) => debug!(object, range = %text, "IPv6 source range skipped"),
            Err(e) => errors.push(e.at(object, format!("spec.loadBalancerSourceRanges[{i}]"))),
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// `a.b.c.d/len`; `Ok(None)` for a valid IPv6 prefix.
fn cidr(text: &str) -> Result<Option<(Ipv4Addr, u8)>, Invalid> {
    let bad = || {
        Invalid::new(
            ErrorKind::InvalidAddress,
            format!("{text:?} is not a CIDR prefix (like 198.18.0.0/16); range skipped"),
        )
    };
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    if addr.contains(':') {
        let ok =
            addr.parse::<std::net::Ipv6Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 128);
        return if ok { Ok(None) } else { Err(bad()) };
    }
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(bad)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(Some((Ipv4Addr::from(u32::from(addr) & mask), len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ranges: &[&str]) -> ServiceSpec {
        ServiceSpec {
            load_balancer_source_ranges: Some(ranges.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn prefixes_are_parsed_masked_and_sorted() {
        let mut errors = Vec::new();
        let got = parse(
            &spec(&["198.18.100.7/24", "10.0.0.0/8", "fd00::/8", "198.18.1.1/32"]),
            "Service d/s",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            got,
            Some(vec![
                (Ipv4Addr::new(10, 0, 0, 0), 8),
                (Ipv4Addr::new(198, 18, 1, 1), 32),
                (Ipv4Addr::new(198, 18, 100, 0), 24),
            ])
        );
    }

    #[test]
    fn unset_or_empty_allows_all() {
        let mut errors = Vec::new();
        assert_eq!(
            parse(&ServiceSpec::default(), "Service d/s", &mut errors),
            None
        );
        assert_eq!(parse(&spec(&[]), "Service d/s", &mut errors), None);
        assert!(errors.is_empty());
    }

    #[test]
    fn bad_entries_are_reported_and_skipped_not_opened() {
        let mut errors = Vec::new();
        let got = parse(
            &spec(&[
                "198.18.0.0/33",
                "garbage",
                "198.18.5.0/24",
                "1.2.3.4",
                "fd00::/129",
            ]),
            "Service d/s",
            &mut errors,
        );
        assert_eq!(got, Some(vec![(Ipv4Addr::new(198, 18, 5, 0), 24)]));
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.loadBalancerSourceRanges[0]",
                "spec.loadBalancerSourceRanges[1]",
                "spec.loadBalancerSourceRanges[3]",
                "spec.loadBalancerSourceRanges[4]",
            ]
        );
        assert!(
            errors
                .iter()
                .all(|e| e.object == "Service d/s" && e.kind == ErrorKind::InvalidAddress)
        );
        // Only bad entries: an allow-list of nothing, never "allow all".
        let mut errors = Vec::new();
        assert_eq!(
            parse(&spec(&["nope"]), "Service d/s", &mut errors),
            Some(vec![])
        );
        assert_eq!(errors.len(), 1);
    }
}
