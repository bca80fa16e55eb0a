//! `ot dnp3 add|del|list|flush [FCODE]`.

use clap::{Args, Subcommand, ValueEnum};

use crate::bpffs::Root;
use crate::error::{Error, Result};
use crate::maps::Maps;
use crate::ot;

#[derive(Debug, Args)]
pub struct OtArgs {
    #[command(subcommand)]
    pub cmd: OtCmd,
}

#[derive(Debug, Subcommand)]
pub enum OtCmd {
    /// DNP3 function codes outstations (port 20000) may answer with
    Dnp3(Dnp3Args),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Dnp3Action {
    Add,
    Del,
    List,
    Flush,
}

#[derive(Debug, Args)]
pub struct Dnp3Args {
    pub action: Dnp3Action,
    /// Function code 0-255 (add, del)
    pub fcode: Option<String>,
    /// list: one JSON document
    #[arg(long)]
    pub json: bool,
}

pub fn run(root: &Root, a: OtArgs) -> Result<()> {
    let OtCmd::Dnp3(a) = a.cmd;
    let code = match (a.action, &a.fcode) {
        (Dnp3Action::Add | Dnp3Action::Del, None) => {
            return Err(Error::usage("add/del need a function code (0-255)"))
        }
        (Dnp3Action::Add | Dnp3Action::Del, Some(s)) => Some(ot::parse_fcode(s)?),
        (_, Some(s)) => {
            return Err(Error::usage(format!(
                "list/flush take no function code (got '{}')",
                crate::error::shown(s)
            )))
        }
        (_, None) => None,
    };
    let maps = Maps::open(root)?;
    // add/del/flush read, then write: hold the root's lock (apply does too)
    let _lock = root.lock()?;
    match (a.action, code) {
        (Dnp3Action::Add, Some(c)) => {
            if ot::dnp3_add(&maps, c)? {
                crate::outln!("zfw: DNP3 function code {c} allowed")?;
            } else {
                crate::outln!("zfw: DNP3 function code {c} was already allowed")?;
            }
        }
        (Dnp3Action::Del, Some(c)) => {
            ot::dnp3_del(&maps, c)?;
            crate::outln!("zfw: DNP3 function code {c} no longer allowed")?;
        }
        (Dnp3Action::Flush, _) => {
            let n = ot::dnp3_flush(&maps)?;
            crate::outln!("zfw: removed {n} DNP3 function code(s)")?;
        }
        _ => {
            let codes = ot::dnp3_codes(&maps)?;
            if a.json {
                return super::print_json(&codes);
            }
            for c in codes {
                crate::outln!("{c}")?;
            }
        }
    }
    Ok(())
}
