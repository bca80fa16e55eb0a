//! Attaching the datapath: TC (clsact ingress prio 1 + 2, egress prio 1) and
//! XDP on tun interfaces, through netlink (libbpf), with fixed handles and
//! priorities so that a reload replaces in place.

pub mod tc;
pub mod xdp;

/// Filter handle zfw uses for all its TC filters.
pub const TC_HANDLE: u32 = 1;
/// TC ingress priority of the policy program.
pub const PRIO_POLICY: u32 = 1;
/// TC ingress priority of the flow-tracking program.
pub const PRIO_TRACK: u32 = 2;
/// TC egress priority of the egress program.
pub const PRIO_EGRESS: u32 = 1;
