//! Addresses as the datapath stores them, and the protocol and family
//! numbers its keys carry: one definition for the rules, the decoders,
//! the DDoS and interface tables and netlink.
//!
//! The datapath keeps every address in four `u32` words holding the
//! network-order bytes (IPv4 in word 0, the other three zero), and writes
//! the kernel's AF_* and IPPROTO_* numbers into its keys: zfw_abi.h names
//! them (`enum zfw_proto`, `enum zfw_family`) and the constants below are
//! those names (a unit test checks them against libc).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::skel::names;

use crate::error::shown;

/// Protocol numbers the datapath's keys carry (the kernel's IPPROTO_*).
pub const IPPROTO_ICMP: u8 = names::ZFW_P_ICMP as u8;
pub const IPPROTO_TCP: u8 = names::ZFW_P_TCP as u8;
pub const IPPROTO_UDP: u8 = names::ZFW_P_UDP as u8;
pub const IPPROTO_ICMPV6: u8 = names::ZFW_P_ICMPV6 as u8;
/// VRRP (IANA protocol 112; libc has no name for it).
pub const IPPROTO_VRRP: u8 = names::ZFW_P_VRRP as u8;

/// Address families the datapath's keys carry (the kernel's AF_*).
pub const AF_INET: u8 = names::ZFW_AF_INET as u8;
pub const AF_INET6: u8 = names::ZFW_AF_INET6 as u8;

/// An address family (both prefixes of a rule share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The kernel's AF_* number (what the datapath's keys carry).
    pub fn af(self) -> u8 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }

    pub fn from_af(af: u8) -> Option<Family> {
        match af {
            AF_INET => Some(Family::V4),
            AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    pub fn of(a: IpAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// An address as the datapath's four words (IPv4 in word 0).
pub fn addr_words(a: IpAddr) -> [u32; 4] {
    let mut w = [0u32; 4];
    match a {
        IpAddr::V4(v4) => w[0] = u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(v6) => {
            for (slot, c) in w.iter_mut().zip(v6.octets().chunks_exact(4)) {
                *slot = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    w
}

/// The inverse of [`addr_words`].
pub fn words_addr(f: Family, w: &[u32; 4]) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(w[0].to_ne_bytes())),
        Family::V6 => {
            let mut o = [0u8; 16];
            for (i, x) in w.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }
}

/// The address in a key whose family field is `af`; None for a family the
/// datapath does not write.
pub fn af_words_addr(af: u8, w: &[u32; 4]) -> Option<IpAddr> {
    Family::from_af(af).map(|f| words_addr(f, w))
}

/// `addr` with all but the first `len` bits cleared.
pub fn mask_addr(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// An address prefix, stored masked (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn any(f: Family) -> Prefix {
        match f {
            Family::V4 => Prefix {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                len: 0,
            },
            Family::V6 => Prefix {
                addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                len: 0,
            },
        }
    }

    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// Build from an address and length, masking host bits.
    pub fn new(addr: IpAddr, len: u8) -> Prefix {
        Prefix {
            addr: mask_addr(addr, len),
            len,
        }
    }

    /// Does this prefix contain `other` (same family, shorter or equal)?
    pub fn contains(&self, other: &Prefix) -> bool {
        self.family() == other.family()
            && self.len <= other.len
            && mask_addr(other.addr, self.len) == self.addr
    }

    /// The address as the datapath's four network-order words.
    pub fn words(&self) -> [u32; 4] {
        addr_words(self.addr)
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `10.0.0.0/24`, `fd00::/8`, or a bare address (host prefix).  Host
    /// bits set beyond the length are an error, as in `ip route`.
    fn from_str(s: &str) -> std::result::Result<Prefix, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{}' is not an IPv4/IPv6 address or CIDR prefix", shown(s)))?;
        let max = Family::of(addr).bits();
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("'{}': prefix length must be 0-{max}", shown(s)))?,
        };
        let p = Prefix::new(addr, len);
        if p.addr != addr {
            return Err(format!(
                "'{}' has host bits set (did you mean {}/{len}?)",
                shown(s),
                p.addr
            ));
        }
        Ok(p)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_and_family_numbers_are_the_kernels() {
        use nix::libc;
        assert_eq!(IPPROTO_ICMP, libc::IPPROTO_ICMP as u8);
        assert_eq!(IPPROTO_TCP, libc::IPPROTO_TCP as u8);
        assert_eq!(IPPROTO_UDP, libc::IPPROTO_UDP as u8);
        assert_eq!(IPPROTO_ICMPV6, libc::IPPROTO_ICMPV6 as u8);
        assert_eq!(AF_INET, libc::AF_INET as u8);
        assert_eq!(AF_INET6, libc::AF_INET6 as u8);
    }

    #[test]
    fn prefixes_parse_mask_and_refuse_host_bits() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!("10.1.2.0/16".parse::<Prefix>().is_err());
        assert!("10.1.0.0/33".parse::<Prefix>().is_err());
        assert_eq!("fd00::1".parse::<Prefix>().unwrap().len, 128);
        assert!("nonsense".parse::<Prefix>().is_err());
        let wide: Prefix = "10.0.0.0/8".parse().unwrap();
        assert!(wide.contains(&p));
        assert!(!p.contains(&wide));
    }

    #[test]
    fn words_are_network_order_bytes_and_round_trip() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let w = addr_words(v4);
        assert_eq!(w[0].to_ne_bytes(), [192, 0, 2, 1]);
        assert_eq!(&w[1..], &[0, 0, 0]);
        for s in ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "::"] {
            let a: IpAddr = s.parse().unwrap();
            assert_eq!(words_addr(Family::of(a), &addr_words(a)), a, "{s}");
            assert_eq!(af_words_addr(Family::of(a).af(), &addr_words(a)), Some(a));
        }
        assert_eq!(af_words_addr(0, &[0; 4]), None);
    }
}
