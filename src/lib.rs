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
pub mod legacy;
pub mod loader;
pub mod maps;
pub mod monitor;
pub mod nat;
pub mod netlink;
pub mod ot;
pub mod rules;
pub mod skel;
pub mod status;
pub mod testkit;

pub use error::{Error, Result};
