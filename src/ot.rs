//! OT filtering settings: the DNP3 function codes an outstation may answer
//! with (dnp3_fcode_map).  Modbus needs no settings: requests seen on egress
//! are its allow list (see src/bpf/ot.h).

use crate::error::{Error, Result};
use crate::maps::defs::DNP3_FCODE_MAP;
use crate::maps::Maps;

/// A DNP3 function code 0-255.
pub fn parse_fcode(s: &str) -> Result<u8> {
    s.parse::<u8>().map_err(|_| {
        Error::usage(format!(
            "function code '{}': expected 0-255",
            crate::error::shown(s)
        ))
    })
}

/// Allow `code`; Ok(false) when it already was.
pub fn dnp3_add(maps: &Maps, code: u8) -> Result<bool> {
    let k = u32::from(code);
    if maps.get(&DNP3_FCODE_MAP, &k)?.is_some() {
        return Ok(false);
    }
    maps.put(&DNP3_FCODE_MAP, &k, &1)?;
    Ok(true)
}

pub fn dnp3_del(maps: &Maps, code: u8) -> Result<()> {
    if !maps.del(&DNP3_FCODE_MAP, &u32::from(code))? {
        return Err(Error::usage(format!(
            "DNP3 function code {code} is not in the allow list"
        )));
    }
    Ok(())
}

pub fn dnp3_codes(maps: &Maps) -> Result<Vec<u8>> {
    let mut v: Vec<u8> = maps
        .entries(&DNP3_FCODE_MAP)?
        .into_iter()
        .map(|(k, _)| k as u8)
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Remove every code; returns how many there were.
pub fn dnp3_flush(maps: &Maps) -> Result<usize> {
    let codes = dnp3_codes(maps)?;
    for c in &codes {
        maps.del(&DNP3_FCODE_MAP, &u32::from(*c))?;
    }
    Ok(codes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_codes_are_0_to_255() {
        assert_eq!(parse_fcode("0").unwrap(), 0);
        assert_eq!(parse_fcode("255").unwrap(), 255);
        for bad in ["256", "-1", "0x81", ""] {
            assert_eq!(parse_fcode(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
