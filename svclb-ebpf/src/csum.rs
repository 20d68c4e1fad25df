//! One's-complement checksum arithmetic (RFC 1071, RFC 1624).
//!
//! Values are used exactly as loaded from the packet (native loads of network-order
//! bytes): one's-complement sums commute with byte swapping, so no conversion is
//! needed as long as loads and stores agree.

/// Folds an accumulator to 16 bits (not inverted).
#[inline(always)]
pub fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, for a 32-bit field.
#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let nold = !old;
    let s = u64::from(!check)
        + u64::from(nold & 0xffff)
        + u64::from(nold >> 16)
        + u64::from(new & 0xffff)
        + u64::from(new >> 16);
    !fold(s)
}

/// RFC 1624 eqn. 3 for a 16-bit field.
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    let s = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(s)
}

/// Sum of the 16-bit words of `buf[off..off + len]` (`len` even). Bounded by `N`
/// and free of panics, so the verifier sees a short bounded loop (or none, when
/// `off` and `len` are constants and the loop is unrolled).
#[inline(always)]
pub fn sum_words<const N: usize>(buf: &[u8; N], off: usize, len: usize) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i < N / 2 {
        let a = off + 2 * i;
        if 2 * i + 1 >= len || a + 1 >= N {
            break;
        }
        s += u64::from(u16::from_ne_bytes([buf[a], buf[a + 1]]));
        i += 1;
    }
    s
}

/// Adds a 32-bit value (an address as loaded) as two words.
#[inline(always)]
pub fn sum_u32(v: u32) -> u64 {
    u64::from(v & 0xffff) + u64::from(v >> 16)
}
