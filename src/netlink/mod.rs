//! Netlink from Rust (no `ip`): the routes TPROXY rules need, and the link
//! and address notifications `zfw watch` follows.

pub mod events;
pub mod route;
