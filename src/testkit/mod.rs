//! Building blocks for packet tests and benchmarks: a frame builder and a
//! BPF_PROG_TEST_RUN runner for pinned programs.  Used by tests/ and by
//! `zfw-bench`; nothing in the firewall itself depends on it, so it is only
//! compiled with the `testkit` cargo feature (the tests enable it through
//! the crate's dev-dependency on itself; zfw-bench requires it).

pub mod decisions;
pub mod packet;
pub mod rules;
pub mod run;
