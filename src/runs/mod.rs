//! Runs: one contract applied to one subject, driven through
//! PENDING → VALIDATING → PROMOTED / ROLLED_BACK by closed windows.
//!
//! - [`machine`]: the pure state machine (streaks, decisions, timeouts);
//! - [`engine`]: the pure per-pipeline core that orders closed windows,
//!   judges them and returns what to commit;
//! - [`task`]: the async driver: commits each batch through the storage
//!   seam ([`crate::storage::RunStore`]) before announcing anything, and
//!   serves manual decisions;
//! - [`leader`]: the same engine in a cluster, driven by the leader over
//!   the window partials of every instance;

pub mod catalog;
mod deadlines;
pub mod engine;
pub mod leader;
pub mod machine;
pub mod rollout;
pub mod task;

pub use crate::storage::RunStore;
pub use catalog::{Catalog, ReloadRequest};
