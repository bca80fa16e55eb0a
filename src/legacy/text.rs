//! Text the legacy grammar prints: untrusted values made safe to show, the
//! short usage that follows a usage error, and `zfw -?`.

use super::argp::{Arg, Key, SPECS};

// `shown` (untrusted values made safe to print) is shared with zfw's own
// grammar; it lives beside the error type.
pub use crate::error::{shown, SHOWN_MAX};

/// The short usage printed after a usage error (the C zfw prints one
/// there too; these lines are ours).
pub fn short_usage() -> String {
    [
        "Usage: zfw -I -c ADDR -m LEN [-o ADDR -n LEN] -l PORT -h PORT -t PORT -p tcp|udp [-s ID] [-N IF]... [-d] [-r] [-z DIR]",
        "       zfw -D -c ADDR -m LEN [-o ADDR -n LEN] -l PORT -p tcp|udp [-z DIR]",
        "       zfw -L [-c ADDR -m LEN [-o ADDR -n LEN] [-p P]] [-i|-f] [-z DIR] [-6 all]",
        "       zfw -L -E | -L -Y | -L -U | -L -C | -L -G",
        "       zfw -F [-z DIR] | -F -j | -F -C",
        "       zfw -e|-v|-x|-P|-T|-R|-w|-q|-a|-b|-k|-S|-6 IF|all [-d]",
        "       zfw -X IF|all -O FILE -z DIR [-d] | -H IF|all | -Z IF | -Q",
        "       zfw -y ADDR [-d] | -u PORT [-d] | -g FCODE [-d] | -B|-J ADDR -m LEN",
        "       zfw -M IF|all [-W FILE] | -A | -V | -?",
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

/// `zfw -?` / `zfw --help` in the legacy grammar.
pub fn help() -> String {
    let mut s = String::from(
        "Usage: zfw [OPTION...]\n\
         The C zfw v0.9.21 command line, run on this zfw's engine (README:\n\
         \"Replacing the C zfw under OpenZiti\"). `zfw --help` shows zfw's own commands;\n\
         `zfw --bpffs DIR -L` (or ZFW_BPFFS=DIR) works on another bpffs root.\n\n",
    );
    for sp in SPECS.iter().filter(|sp| !sp.doc.is_empty()) {
        let short = match sp.key {
            Key::Flag(c) => format!("-{c}, "),
            Key::Help => "-?, ".into(),
            Key::Version => "-V, ".into(),
            _ => "    ".into(),
        };
        let long = match sp.arg {
            Arg::No => format!("--{}", sp.long),
            _ => format!("--{}={}", sp.long, sp.meta),
        };
        s.push_str(&format!("  {short}{long:<32} {}\n", sp.doc));
    }
    s.push_str(
        "\nMandatory arguments to long options are mandatory for the short ones too.\n\
         Long options may be abbreviated to any unambiguous prefix.\n",
    );
    s
}

/// argp's `--usage`.
pub fn usage_line() -> String {
    let mut flags: Vec<char> = SPECS
        .iter()
        .filter_map(|sp| match (sp.key, sp.arg) {
            (Key::Flag(c), Arg::No) => Some(c),
            _ => None,
        })
        .collect();
    flags.push('?');
    flags.push('V');
    let with: Vec<String> = SPECS
        .iter()
        .filter_map(|sp| match (sp.key, sp.arg) {
            (Key::Flag(c), Arg::Required) => Some(format!("[-{c} {}]", sp.meta)),
            _ => None,
        })
        .collect();
    format!(
        "Usage: zfw [-{}] {}\n",
        flags.iter().collect::<String>(),
        with.join(" ")
    )
}
