//! Netlink from Rust (no `ip`): the routes TPROXY rules need.

pub mod route;
