//! zfw: a stateful eBPF firewall.  The library does the work; `src/bin/zfw.rs`
//! only parses the command line and calls [`cli::run`].

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
pub mod loader;
pub mod maps;
pub mod monitor;
pub mod nat;
pub mod net;
pub mod netlink;
pub mod ot;
pub mod rules;
pub mod skel;
pub mod status;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, Result};
