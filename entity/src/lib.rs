//! SeaORM entities of voxpool's database: derives only, no queries, no logic.
//! The queries live in the server's `store` module.

pub mod api_key;
pub mod prelude;
pub mod pronunciation;
pub mod setting;
pub mod usage;
pub mod voice;
