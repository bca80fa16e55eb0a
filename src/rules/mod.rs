//! Rules: the model (model.rs), its compilation into map contents
//! (compile.rs), reading the live rule set back (live.rs), and writing it:
//! whole-set rewrites (store.rs) and single-rule changes (incremental.rs),
//! under the journal that makes a killed change recoverable (journal.rs),
//! with what all three share in sets.rs; each rule's hit counters
//! (counters.rs) and the record of the counter ids in use (ids.rs).

pub mod compile;
pub mod counters;
pub mod ids;
pub mod incremental;
pub mod journal;
pub mod live;
pub mod model;
pub mod sets;
pub mod store;
