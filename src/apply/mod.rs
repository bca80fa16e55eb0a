//! Declarative policy: `zfw apply FILE` and `zfw export`.
//!
//! apply = parse and validate the whole file (file.rs, JSON paths in every
//! error) → read the live state and check the file against the system →
//! compute the desired state and its difference to the live one
//! (state.rs) → write only when something differs.  The caller holds the
//! root's lock from reading the live state to the last write.
//!
//! Atomicity: rules go first, through the two-set store (the complete new
//! rule set is built beside the live one and switched in with one
//! config_map update; a failure before the switch leaves the live rules
//! untouched).  Capacity of the small maps (ddos, dnp3) is checked before
//! anything is written; should one of the later writes fail anyway, the
//! previous state is written back (rules included) before the error is
//! returned.

pub mod export;
pub mod file;
pub mod state;

use crate::error::{Error, Result};
use crate::maps::Maps;
use crate::maps::{defs, MapId};
use crate::rules::store;
use crate::skel::types;
use crate::{ddos, ot};

pub use file::{parse, Policy};
pub use state::{Change, State};

/// The result of comparing a file with the live state.
pub struct Plan {
    pub live: State,
    pub desired: State,
    pub changes: Vec<Change>,
}

/// Read the live state, check `policy` against the system, and compute
/// what applying it would change.  Writes nothing.
pub fn plan(maps: &Maps, file: &str, policy: &Policy, prune: bool) -> Result<Plan> {
    let live = state::read(maps)?;
    let attached = live
        .ifaces
        .iter()
        .map(|(n, (i, _))| (n.clone(), *i))
        .collect();
    policy.check_system(file, &attached)?;
    let desired = state::desired(&live, policy, prune);
    let changes = state::diff(&live, &desired);
    Ok(Plan {
        live,
        desired,
        changes,
    })
}

fn room(maps: &Maps, m: impl MapId, now: usize, want: usize) -> Result<()> {
    let name = m.info()?.name;
    let max = maps.max_entries(m)? as usize;
    if want > now && want > max {
        return Err(Error::runtime(format!(
            "{name} is full: the policy needs {want} entries, {name} holds {max}; nothing changed"
        )));
    }
    Ok(())
}

/// Make the live state `plan.desired`; see the module doc.
pub fn execute(maps: &Maps, plan: &Plan, progress: &mut dyn FnMut(&str)) -> Result<()> {
    if plan.changes.is_empty() {
        return Ok(());
    }
    let (l, d) = (&plan.live, &plan.desired);
    room(
        maps,
        &defs::DDOS_DPORT_MAP,
        l.ddos_ports.len(),
        d.ddos_ports.len(),
    )?;
    room(
        maps,
        &defs::DDOS_SADDR_MAP,
        l.ddos_allow.len(),
        d.ddos_allow.len(),
    )?;
    room(maps, &defs::DNP3_FCODE_MAP, l.dnp3.len(), d.dnp3.len())?;
    let rules_changed = !state::same_rules(&l.rules, &d.rules);
    if rules_changed {
        progress(&format!("writing {} rules", d.rules.len()));
        store::replace_all(maps, &d.rules)?;
    }
    progress("writing settings");
    if let Err(e) = write_settings(maps, l, d) {
        // put the previous policy back before reporting
        let restored = state::read(maps)
            .and_then(|now| write_settings(maps, &now, l))
            .and_then(|()| {
                if rules_changed {
                    store::replace_all(maps, &l.rules)
                } else {
                    Ok(())
                }
            });
        return Err(match restored {
            Ok(()) => Error::runtime(format!("{e}; the previous policy was restored")),
            Err(r) => Error::runtime(format!(
                "{e}; restoring the previous policy failed too: {r}"
            )),
        });
    }
    // cached decisions may depend on interface settings: new generation
    store::bump_gen(maps)
}

/// Write interface settings, ddos ports/allow list and dnp3 codes so that
/// `from` (what is live) becomes `to`.
pub fn write_settings(maps: &Maps, from: &State, to: &State) -> Result<()> {
    for (name, (idx, flags)) in &to.ifaces {
        if from.ifaces.get(name).map(|(_, f)| f) == Some(flags) {
            continue;
        }
        let mut st: types::zfw_iface = crate::iface_state::get_or_default(maps, *idx, name)?;
        st.flags = *flags;
        crate::iface_state::store(maps, *idx, &st)?;
    }
    for p in from.ddos_ports.difference(&to.ddos_ports) {
        maps.del(&defs::DDOS_DPORT_MAP, &u32::from(*p))?;
    }
    for p in to.ddos_ports.difference(&from.ddos_ports) {
        ddos::port_add(maps, *p)?;
    }
    for ip in from.ddos_allow.difference(&to.ddos_allow) {
        maps.del(&defs::DDOS_SADDR_MAP, &ddos::addr_key(*ip))?;
    }
    for ip in to.ddos_allow.difference(&from.ddos_allow) {
        ddos::allow_add(maps, *ip)?;
    }
    for c in from.dnp3.difference(&to.dnp3) {
        maps.del(&defs::DNP3_FCODE_MAP, &u32::from(*c))?;
    }
    for c in to.dnp3.difference(&from.dnp3) {
        ot::dnp3_add(maps, *c)?;
    }
    Ok(())
}
