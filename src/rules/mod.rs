//! Rules: the model (model.rs), its compilation into map contents
//! (compile.rs) and the live rule set in the pinned maps (store.rs).

pub mod compile;
pub mod model;
pub mod store;
