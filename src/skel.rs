//! The generated skeletons, plain-data impls for the shared ABI structs, and
//! the name tables build.rs derives from src/bpf/zfw_abi.h.

#[allow(
    clippy::all,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports
)]
#[allow(unsafe_op_in_unsafe_fn)]
pub mod zfw {
    include!(concat!(env!("OUT_DIR"), "/zfw.skel.rs"));
}

#[allow(
    clippy::all,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports
)]
#[allow(unsafe_op_in_unsafe_fn)]
pub mod empty {
    include!(concat!(env!("OUT_DIR"), "/empty.skel.rs"));
}

#[allow(
    clippy::all,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    unused_imports
)]
#[allow(unsafe_op_in_unsafe_fn)]
pub mod bench {
    include!(concat!(env!("OUT_DIR"), "/bench.skel.rs"));
}

/// `enum` member tables of zfw_abi.h: `ZFW_REASON`, `ZFW_TCP_STATE`, ...
pub mod names {
    include!(concat!(env!("OUT_DIR"), "/abi_enums.rs"));
}

include!(concat!(env!("OUT_DIR"), "/build_id.rs"));

pub use zfw::types;

macro_rules! plain_types {
    ($($t:ident),* $(,)?) => {
        $(
            // SAFETY: zfw_abi.h declares this struct with fixed-width fields and
            // explicit padding members, so every byte pattern is a valid value
            // and no byte is left undefined.
            unsafe impl plain::Plain for types::$t {}
        )*
    };
}

plain_types!(
    zfw_config,
    zfw_iface,
    zfw_if_addrs4,
    zfw_if_addrs6,
    zfw_watch_lease,
    zfw_monitor_lease,
    zfw_journal,
    zfw_in6,
    zfw_flow_key,
    zfw_flow,
    zfw_flow_cache,
    zfw_tun_cache,
    zfw_rule_key,
    zfw_rule_span,
    zfw_range,
    zfw_rule_stats,
    zfw_service_id,
    zfw_lpm_key,
    zfw_lpm_val,
    zfw_match_key,
    zfw_match_val,
    zfw_match_slot,
    zfw_nat_key,
    zfw_nat_val,
    zfw_nat_rev,
    zfw_nat_closed,
    zfw_tun_state,
    zfw_tun_iface,
    zfw_addr_key,
    zfw_bucket,
    zfw_modbus_key,
    zfw_modbus_val,
    zfw_frag_key,
    zfw_event,
);

/// Look a value up in one of the `names` tables; strips `prefix` and
/// lower-cases the rest (`ZFW_TCP_ESTABLISHED` -> `established`).
pub fn enum_name(table: &[(&str, i64)], prefix: &str, value: i64) -> String {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(n, _)| n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase())
        .unwrap_or_else(|| format!("unknown({value})"))
}

/// Bytes of a plain ABI value, for map calls.
pub fn bytes_of<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain: a fully initialised value without padding holes.
    unsafe { plain::as_bytes(v) }
}

/// Copy a plain ABI value out of map bytes.  The bytes must be exactly one
/// value: a short or long buffer means the map and the type disagree, which
/// is an error, never a value padded with zeros.
pub fn from_bytes<T: plain::Plain + Default>(b: &[u8]) -> crate::Result<T> {
    let want = std::mem::size_of::<T>();
    if b.len() != want {
        return Err(crate::Error::runtime(format!(
            "{} bytes where a {} of {want} bytes was expected",
            b.len(),
            short_type_name::<T>()
        )));
    }
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, b)
        .map_err(|_| crate::Error::runtime(format!("reading a {}", short_type_name::<T>())))?;
    Ok(v)
}

/// `zfw_flow_key` for `zfw::skel::zfw::types::zfw_flow_key`.
pub fn short_type_name<T>() -> &'static str {
    let n = std::any::type_name::<T>();
    n.rsplit("::").next().unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes_match_the_c_layout() {
        // The generated mirrors must have exactly the C sizes the header
        // comments promise (no implicit padding).
        assert_eq!(std::mem::size_of::<types::zfw_flow_key>(), 44);
        assert_eq!(std::mem::size_of::<types::zfw_flow>(), 80);
        assert_eq!(std::mem::size_of::<types::zfw_flow_cache>(), 136);
        assert_eq!(std::mem::size_of::<types::zfw_rule_key>(), 40);
        assert_eq!(std::mem::size_of::<types::zfw_range>(), 32);
        assert_eq!(std::mem::size_of::<types::zfw_rule_stats>(), 24);
        assert_eq!(std::mem::size_of::<types::zfw_lpm_key>(), 24);
        assert_eq!(std::mem::size_of::<types::zfw_event>(), 64);
        assert_eq!(std::mem::size_of::<types::zfw_config>(), 40);
    }

    #[test]
    fn from_bytes_takes_exactly_one_value() {
        let k = types::zfw_flow_key {
            sport: 80,
            ..Default::default()
        };
        let b = bytes_of(&k).to_vec();
        let back: types::zfw_flow_key = from_bytes(&b).unwrap();
        assert_eq!(back.sport, 80);
        let short = from_bytes::<types::zfw_flow_key>(&b[..b.len() - 1]).unwrap_err();
        assert_eq!(
            short.to_string(),
            "43 bytes where a zfw_flow_key of 44 bytes was expected"
        );
        let mut long = b.clone();
        long.push(0);
        assert!(from_bytes::<types::zfw_flow_key>(&long).is_err());
        assert!(from_bytes::<u32>(&[]).is_err());
    }

    #[test]
    fn enum_names_come_from_the_header() {
        assert_eq!(
            enum_name(names::ZFW_TCP_STATE, "ZFW_TCP_", 3),
            "established"
        );
        assert_eq!(enum_name(names::ZFW_REASON, "ZFW_R_", 1), "pass_arp");
        assert_eq!(names::ZFW_ABI_VERSION, 10);
        assert_eq!(names::ZFW_UDP_TIMEOUT_S, 30);
    }
}
