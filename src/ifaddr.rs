//! Interfaces of the current network namespace: names, indexes, addresses.
//! Read with getifaddrs(3) (netlink underneath), never by running `ip`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// Index of interface `name`, or the "unknown interface" usage error.
pub fn index_of(name: &str) -> Result<u32> {
    if check_name(name).is_err() {
        return Err(Error::UnknownIface(name.to_string()));
    }
    nix::net::if_::if_nametoindex(name).map_err(|_| Error::UnknownIface(name.to_string()))
}

/// An interface name as Linux allows it (dev_valid_name): 1-15 bytes,
/// not `.` or `..`, no `/`, `:`, white space or other control character.
/// The error names the value, escaped.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let bad = |b: u8| b == b'/' || b == b':' || b.is_ascii_whitespace() || b < 0x20 || b == 0x7f;
    if name.is_empty() || name.len() >= 16 || name == "." || name == ".." || name.bytes().any(bad) {
        return Err(format!(
            "name '{}': expected 1-15 characters without '/', ':', spaces or control characters",
            crate::error::shown(name)
        ));
    }
    Ok(())
}

/// Name of interface `index`, if it still exists.
pub fn name_of(index: u32) -> Option<String> {
    nix::net::if_::if_nameindex()
        .ok()?
        .iter()
        .find(|i| i.index() == index)
        .map(|i| i.name().to_string_lossy().into_owned())
}

/// Names of every interface of this namespace, sorted.
pub fn all_names() -> Vec<String> {
    let mut v: Vec<String> = nix::net::if_::if_nameindex()
        .map(|l| {
            l.iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

/// IPv4 and IPv6 addresses of interface `name`.
pub fn addresses(name: &str) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs.filter(|a| a.interface_name == name) {
            let Some(sa) = a.address else { continue };
            if let Some(s4) = sa.as_sockaddr_in() {
                v4.push(s4.ip());
            } else if let Some(s6) = sa.as_sockaddr_in6() {
                v6.push(s6.ip());
            }
        }
    }
    (v4, v6)
}
