//! Runs: one contract applied to one subject, driven through
//! PENDING → VALIDATING → PROMOTED / ROLLED_BACK by closed windows.
//!
//! - [`machine`]: the pure state machine (streaks, decisions, timeouts);
//! - [`engine`]: the pure per-pipeline core that orders closed windows,
//!   judges them and commits transitions to a [`store::RunStore`];
//! - [`task`]: the async driver around the engine;
//! - [`record`]: what is stored and announced (runs, windows, events).

pub mod engine;
pub mod machine;
pub mod record;
pub mod store;
pub mod task;

pub use record::{RunRecord, RunState, VerdictEvent, WindowRecord};
pub use store::{MemoryStore, RunStore, StoreError};
