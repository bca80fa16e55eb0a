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

    /// Top-level module -> the top-level modules its non-test code names.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
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
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let top = rel.iter().next().unwrap().to_string_lossy();
            let top = top.trim_end_matches(".rs").to_string();
            if top == "bin" || top == "lib" || top == "bpf" {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let deps = g.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
        g
    }

    #[test]
    fn no_module_names_a_module_that_names_it_back() {
        let g = graph();
        assert!(g.contains_key("maps") && g["dump"].contains("maps"));
        // depth-first search for a path back to where it started
        fn back(
            g: &BTreeMap<String, BTreeSet<String>>,
            at: &str,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == at) {
                let mut c = path[i..].to_vec();
                c.push(at.to_string());
                return Some(c);
            }
            path.push(at.to_string());
            for d in g.get(at).into_iter().flatten() {
                if let Some(c) = back(g, d, path) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        for m in g.keys() {
            let circle = back(&g, m, &mut Vec::new());
            assert!(circle.is_none(), "import circle: {:?}", circle);
        }
    }
}
