//! IPv4 CIDR ranges for the kube-proxy flags that take them (`--nodeport-addresses`,
//! `--cluster-cidr`).
use std::{fmt, net::Ipv4Addr, str::FromStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The network address (host bits are zero).
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("{0:?}: expected an IPv4 CIDR like 10.0.0.0/8")]
    Syntax(String),
    #[error("{0:?}: IPv6 is not supported (svclb's data path is IPv4 only)")]
    Ipv6(String),
    #[error("{text:?}: prefix length {prefix} is over 32")]
    Prefix { text: String, prefix: u32 },
    #[error("{text:?}: host bits are set (did you mean {network}?)")]
    HostBits { text: String, network: String },
}

impl Ipv4Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let t = text.trim();
        let (a, p) = t
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(text.into()))?;
        if a.contains(':') {
            return Err(CidrError::Ipv6(text.into()));
        }
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Syntax(text.into()))?;
        let prefix: u32 = p.parse().map_err(|_| CidrError::Syntax(text.into()))?;
        if prefix > 32 {
            return Err(CidrError::Prefix {
                text: text.into(),
                prefix,
            });
        }
        let cidr = Ipv4Cidr {
            addr,
            prefix: prefix as u8,
        };
        let network = Ipv4Addr::from(u32::from(addr) & cidr.mask());
        // kube-proxy (net.ParseCIDR) accepts host bits and drops them; refusing them
        // catches a mistyped prefix instead of silently widening or narrowing it.
        if network != addr {
            return Err(CidrError::HostBits {
                text: text.into(),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_contains() {
        let c: Ipv4Cidr = "198.18.0.0/15".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(198, 20, 0, 0)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        let one: Ipv4Cidr = "10.1.2.3/32".parse().unwrap();
        assert!(one.contains(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(!one.contains(Ipv4Addr::new(10, 1, 2, 4)));
        assert_eq!(one.to_string(), "10.1.2.3/32");
    }

    #[test]
    fn rejects_bad_input_with_the_text() {
        assert_eq!(
            "10.0.0.0".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax("10.0.0.0".into()))
        );
        assert_eq!(
            "fd00::/8".parse::<Ipv4Cidr>(),
            Err(CidrError::Ipv6("fd00::/8".into()))
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix { prefix: 33, .. })
        ));
        let e = "10.0.0.1/8".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.0.0.1/8\": host bits are set (did you mean 10.0.0.0/8?)"
        );
        assert!("10.0.0.0/x".parse::<Ipv4Cidr>().is_err());
    }
}
