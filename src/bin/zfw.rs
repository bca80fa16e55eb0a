//! zfw command-line entry point: pick the grammar, dispatch, exit.
//!
//! zfw's own grammar (subcommands) unless the first argument, after an
//! optional `--bpffs DIR`, starts with `-` and is not one of our global
//! options (`--bpffs`, `--version`, `-h`/`--help` alone): then the C zfw's
//! (README: "Replacing the C zfw under OpenZiti"), on the root that
//! `--bpffs DIR`, else $ZFW_BPFFS, else the default names.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, PartialEq, Eq)]
enum Grammar {
    Ours,
    /// the C zfw's, from argument `start` on
    Legacy {
        bpffs: Option<OsString>,
        start: usize,
    },
}

/// Which grammar `args` (argv without argv[0]) are in.
fn grammar(args: &[OsString]) -> Grammar {
    let (bpffs, start) = match args.first().and_then(|a| a.to_str()) {
        Some("--bpffs") if args.len() > 1 => (Some(args[1].clone()), 2),
        Some(a) if a.starts_with("--bpffs=") => (Some(OsString::from(&a["--bpffs=".len()..])), 1),
        _ => (None, 0),
    };
    let rest = &args[start..];
    let Some(first) = rest.first() else {
        return Grammar::Ours;
    };
    let first = first.to_string_lossy();
    let ours = !first.starts_with('-')
        || first == "-"
        || first == "--version"
        || first == "--bpffs"
        || first.starts_with("--bpffs=")
        || ((first == "-h" || first == "--help") && rest.len() == 1);
    if ours {
        Grammar::Ours
    } else {
        Grammar::Legacy { bpffs, start }
    }
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args = argv.get(1..).unwrap_or_default();
    if let Grammar::Legacy { bpffs, start } = grammar(args) {
        let dir = bpffs
            .or_else(|| std::env::var_os("ZFW_BPFFS").filter(|v| !v.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(zfw::bpffs::DEFAULT_ROOT));
        let prog = argv
            .first()
            .map(PathBuf::from)
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "zfw".to_string());
        let rest: Vec<String> = args[start..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let root = zfw::bpffs::Root::new(dir);
        std::process::exit(zfw::legacy::run(&root, &prog, &rest));
    }
    let cli = match zfw::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(zfw::cli::clap_exit(&e)),
    };
    std::process::exit(zfw::cli::run(cli));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(args: &[&str]) -> Grammar {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        grammar(&v)
    }

    #[test]
    fn the_first_argument_picks_the_grammar() {
        let legacy = |bpffs: Option<&str>, start| Grammar::Legacy {
            bpffs: bpffs.map(OsString::from),
            start,
        };
        for (args, want) in [
            (&[][..], Grammar::Ours),
            (&["load", "--iface", "eth0"][..], Grammar::Ours),
            (&["--version"][..], Grammar::Ours),
            (&["-h"][..], Grammar::Ours),
            (&["--help"][..], Grammar::Ours),
            (&["-"][..], Grammar::Ours),
            (&["--bpffs", "/x", "rule", "list"][..], Grammar::Ours),
            (&["--bpffs=/x", "status"][..], Grammar::Ours),
            (&["--bpffs", "/x", "--help"][..], Grammar::Ours),
            (&["--bpffs"][..], Grammar::Ours),
            (&["-V"][..], legacy(None, 0)),
            (&["-L", "-E"][..], legacy(None, 0)),
            (&["-h", "80", "-I"][..], legacy(None, 0)),
            (&["--insert", "-c", "1.2.3.4"][..], legacy(None, 0)),
            (&["--bpffs", "/x", "-Q"][..], legacy(Some("/x"), 2)),
            (&["--bpffs=/x", "-LE"][..], legacy(Some("/x"), 1)),
        ] {
            assert_eq!(g(args), want, "{args:?}");
        }
    }
}
