//! The flow hash that indexes Maglev tables. The data path computes it per packet and
//! `svclb-agent dump --flow` computes it to predict a flow's backend: one definition
//! keeps the two identical.

/// Hash of a 5-tuple as it appears in the packet (addresses and ports in network byte
/// order, read as native integers the way the data path loads them): murmur3's
/// finalizer over each word.
#[inline(always)]
pub fn flow_hash(saddr_be: u32, daddr_be: u32, sport_be: u16, dport_be: u16, proto: u8) -> u32 {
    let mut h = fmix(saddr_be ^ 0x9e37_79b9);
    h = fmix(h ^ daddr_be);
    h = fmix(h ^ (u32::from(sport_be) << 16 | u32::from(dport_be)));
    fmix(h ^ u32::from(proto))
}

/// murmur3's 32-bit finalizer (`fmix32`).
#[inline(always)]
pub fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses and ports the way the data path reads them from a packet.
    fn be(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    fn port(p: u16) -> u16 {
        u16::from_ne_bytes(p.to_be_bytes())
    }

    #[test]
    fn fmix_matches_murmur3() {
        // Reference values of MurmurHash3's fmix32.
        assert_eq!(fmix(0), 0);
        assert_eq!(fmix(1), 0x514e_28b7);
    }

    #[test]
    fn flow_hash_golden_values() {
        // Computed with an independent implementation (Python) on a little-endian host,
        // where the data path also runs; pins the formula so neither side drifts.
        if cfg!(target_endian = "little") {
            let tcp = flow_hash(
                be([198, 18, 100, 2]),
                be([198, 18, 0, 10]),
                port(40000),
                port(80),
                6,
            );
            assert_eq!(tcp, 0x8021_6e19);
            let udp = flow_hash(
                be([198, 19, 4, 2]),
                be([198, 18, 0, 12]),
                port(53),
                port(53),
                17,
            );
            assert_eq!(udp, 0x5b08_5347);
        }
    }

    #[test]
    fn every_field_matters() {
        let base = (
            be([10, 0, 0, 1]),
            be([10, 0, 0, 2]),
            port(1000),
            port(80),
            6u8,
        );
        let h = flow_hash(base.0, base.1, base.2, base.3, base.4);
        assert_ne!(
            h,
            flow_hash(be([10, 0, 0, 3]), base.1, base.2, base.3, base.4)
        );
        assert_ne!(
            h,
            flow_hash(base.0, be([10, 0, 0, 3]), base.2, base.3, base.4)
        );
        assert_ne!(h, flow_hash(base.0, base.1, port(1001), base.3, base.4));
        assert_ne!(h, flow_hash(base.0, base.1, base.2, port(81), base.4));
        assert_ne!(h, flow_hash(base.0, base.1, base.2, base.3, 17));
        // Swapping source and destination is a different flow.
        assert_ne!(h, flow_hash(base.1, base.0, base.3, base.2, base.4));
    }
}
