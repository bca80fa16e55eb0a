//! DDoS protection settings: protected ports (ddos_dport_map), whitelisted
//! sources (ddos_saddr_map), the per-source SYN rate limit
//! (zfw_config.syn_rate / syn_burst; see src/bpf/ddos.h for the design) and
//! the per-interface SYN counters (syn_count_map).

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::iface_state;
use crate::maps::defs::{DDOS_DPORT_MAP, DDOS_SADDR_MAP, SYN_COUNT_MAP};
use crate::maps::Maps;
use crate::net::{addr_words, af_words_addr, Family};
use crate::skel::types;

/// Upper bound of rate and burst: keeps the datapath's token math in u64.
pub const MAX_RATE: u32 = 1_000_000;

/// A TCP port 1-65535.
pub fn parse_port(s: &str) -> Result<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
        Error::usage(format!(
            "port '{}': expected 1-65535",
            crate::error::shown(s)
        ))
    })
}

pub fn parse_ip(s: &str) -> Result<IpAddr> {
    s.parse::<IpAddr>().map_err(|_| {
        Error::usage(format!(
            "address '{}': expected an IPv4 or IPv6 address",
            crate::error::shown(s)
        ))
    })
}

/// ddos_saddr_map / syn_bucket_map key of an address.
pub fn addr_key(ip: IpAddr) -> types::zfw_addr_key {
    types::zfw_addr_key {
        family: Family::of(ip).af(),
        addr: addr_words(ip),
        ..Default::default()
    }
}

fn key_addr(k: &types::zfw_addr_key) -> Option<IpAddr> {
    af_words_addr(k.family, &k.addr)
}

/// Protect `port`; Ok(false) when it already was.
pub fn port_add(maps: &Maps, port: u16) -> Result<bool> {
    let k = u32::from(port);
    if maps.get(&DDOS_DPORT_MAP, &k)?.is_some() {
        return Ok(false);
    }
    maps.put(&DDOS_DPORT_MAP, &k, &1)?;
    Ok(true)
}

pub fn port_del(maps: &Maps, port: u16) -> Result<()> {
    if !maps.del(&DDOS_DPORT_MAP, &u32::from(port))? {
        return Err(Error::usage(format!(
            "port {port} is not a DDoS-protected port"
        )));
    }
    Ok(())
}

pub fn ports(maps: &Maps) -> Result<Vec<u16>> {
    let mut v: Vec<u16> = maps
        .entries(&DDOS_DPORT_MAP)?
        .into_iter()
        .map(|(k, _)| k as u16)
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Whitelist `ip`; Ok(false) when it already was.
pub fn allow_add(maps: &Maps, ip: IpAddr) -> Result<bool> {
    let k = addr_key(ip);
    if maps.get(&DDOS_SADDR_MAP, &k)?.is_some() {
        return Ok(false);
    }
    maps.put(&DDOS_SADDR_MAP, &k, &1)?;
    Ok(true)
}

pub fn allow_del(maps: &Maps, ip: IpAddr) -> Result<()> {
    if !maps.del(&DDOS_SADDR_MAP, &addr_key(ip))? {
        return Err(Error::usage(format!("{ip} is not on the DDoS whitelist")));
    }
    Ok(())
}

pub fn allowed(maps: &Maps) -> Result<Vec<IpAddr>> {
    let mut v: Vec<IpAddr> = maps
        .entries(&DDOS_SADDR_MAP)?
        .iter()
        .filter_map(|(k, _)| key_addr(k))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Set (Some((rate, burst))) or switch off (None) the per-source SYN limit.
pub fn set_rate(maps: &Maps, limit: Option<(u32, u32)>) -> Result<()> {
    if let Some((rate, burst)) = limit {
        for (what, v) in [("rate", rate), ("burst", burst)] {
            if v == 0 || v > MAX_RATE {
                return Err(Error::usage(format!(
                    "SYN {what} {v}: expected 1-{MAX_RATE} (use `ddos rate off` to disable)"
                )));
            }
        }
    }
    let _lock = maps.root.lock()?;
    let mut cfg = maps.config()?;
    let (rate, burst) = limit.unwrap_or((0, 0));
    cfg.syn_rate = rate;
    cfg.syn_burst = burst;
    maps.set_config(&cfg)
}

/// The SYN limit in force: (rate per second, burst), None when off.
pub fn rate(maps: &Maps) -> Result<Option<(u32, u32)>> {
    let cfg = maps.config()?;
    Ok((cfg.syn_rate != 0).then_some((cfg.syn_rate, cfg.syn_burst)))
}

/// Protected SYNs seen per interface: (interface name, ifindex, count).
pub fn syn_counts(maps: &Maps) -> Result<Vec<(String, u32, u64)>> {
    let names = maps.ifaces()?;
    let mut v: Vec<(String, u32, u64)> = maps
        .entries(&SYN_COUNT_MAP)?
        .into_iter()
        .map(|(idx, n)| {
            let name = names
                .iter()
                .find(|(i, _)| *i == idx)
                .map(|(_, st)| iface_state::name_str(&st.name))
                .unwrap_or_else(|| format!("ifindex {idx}"));
            (name, idx, n)
        })
        .collect();
    v.sort_by_key(|(_, i, _)| *i);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_1_to_65535() {
        assert_eq!(parse_port("443").unwrap(), 443);
        assert_eq!(parse_port("65535").unwrap(), 65535);
        for bad in ["0", "65536", "-1", "http", ""] {
            assert_eq!(parse_port(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn addr_keys_round_trip_and_keep_families_apart() {
        for s in ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(key_addr(&addr_key(ip)), Some(ip));
        }
        let k = addr_key("192.0.2.1".parse().unwrap());
        assert_eq!(k.addr[0].to_ne_bytes(), [192, 0, 2, 1]);
        assert_eq!(&k.addr[1..], &[0, 0, 0]);
        assert_eq!(parse_ip("10.0.0.0/8").unwrap_err().exit_code(), 2);
    }
}
