//! zfw: a stateful eBPF firewall.  The library does the work; `src/bin/zfw.rs`
//! only picks the grammar (zfw's own, [`cli::run`], or the C zfw's,
//! [`legacy::run`]) and calls it.

pub mod apply;
pub mod attach;
pub mod bpffs;
pub mod cli;
pub mod conntrack;
pub mod ddos;
pub mod decode;
pub mod dump;
pub mod error;
pub mod iface_state;
pub mod ifaddr;
pub mod json;
pub mod legacy;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod monitor;
pub mod nat;
pub mod net;
pub mod netlink;
pub mod ot;
pub mod out;
pub mod rules;
pub mod skel;
pub mod status;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod top;
pub mod watch;

pub use error::{Error, Result};

/// The layers of docs/ARCHITECTURE.md §1: the modules below src/ name each
/// other (`crate::NAME`) without a circle.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Module -> the modules its non-test code names through `crate::`
    /// paths: top-level modules, or (`per_file`) each source file's own
    /// module (`rules::store`), where a parent naming its children is
    /// declaring them, not depending on them.
    fn graph(per_file: bool) -> BTreeMap<String, BTreeSet<String>> {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let module = |f: &Path| -> Vec<String> {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut m: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into()).collect();
            if m.len() > 1 && m.last().is_some_and(|l| l == "mod") {
                m.pop();
            }
            m
        };
        let known: BTreeSet<String> = files.iter().map(|f| module(f).join("::")).collect();
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let m = module(&f);
            if m[0] == "bin" || m[0] == "lib" || m[0] == "bpf" {
                continue;
            }
            let me = if per_file { m.join("::") } else { m[0].clone() };
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let deps = g.entry(me.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let path: Vec<String> = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect::<String>()
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let name = match per_file {
                    false => path.first().cloned(),
                    true => (1..=path.len())
                        .rev()
                        .map(|n| path[..n].join("::"))
                        .find(|p| known.contains(p)),
                };
                if let Some(n) = name.filter(|n| *n != me && !n.starts_with(&format!("{me}::"))) {
                    deps.insert(n);
                }
            }
        }
        g
    }

    /// A path in `g` from a module back to itself, if there is one.
    fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        // depth-first search for a path back to where it started
        fn back(
            g: &BTreeMap<String, BTreeSet<String>>,
            at: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == at) {
                let mut c = path[i..].to_vec();
                c.push(at.to_string());
                return Some(c);
            }
            if done.contains(at) {
                return None;
            }
            path.push(at.to_string());
            for d in g.get(at).into_iter().flatten() {
                if let Some(c) = back(g, d, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(at.to_string());
            None
        }
        let mut done = BTreeSet::new();
        g.keys()
            .find_map(|m| back(g, m, &mut Vec::new(), &mut done))
    }

    #[test]
    fn no_module_names_a_module_that_names_it_back() {
        let g = graph(false);
        assert!(g.contains_key("maps") && g["dump"].contains("maps"));
        assert_eq!(circle(&g), None, "import circle");
    }

    /// The same within the modules (ARCHITECTURE.md §7: the rule store's
    /// writers and the journal share `rules::sets`, not each other).
    #[test]
    fn no_source_file_names_a_file_that_names_it_back() {
        let g = graph(true);
        assert!(g["rules::incremental"].contains("rules::sets"), "{g:?}");
        assert_eq!(circle(&g), None, "import circle");
    }
}
