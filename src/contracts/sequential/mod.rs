//! Always-valid sequential checks on proportions for release decisions.
//!
//! verdict re-evaluates every check at every window close (a "look"), for
//! hundreds of looks per run. A fixed-horizon test repeated like that
//! rejects a true null 30–40 % of the time instead of 5 %. The checks here
//! are built on *confidence sequences*: intervals that contain the true
//! value at all looks simultaneously with probability ≥ 1 − α, so a run
//! may be decided at any look without inflating its error rate.
//!
//! * [`ProportionCheck`]: one share against a limit (error rate ≤ E,
//!   share slower than L ≤ 5 % for "p95 ≤ L", conversion ≥ C). Exact
//!   beta-binomial mixture martingale, no normal approximation.
//! * [`DifferenceCheck`]: canary share − baseline share ≤ δ. One-sided
//!   asymptotic confidence sequence (Waudby-Smith et al.) with the variance
//!   estimated under the null boundary (pooled when δ = 0) and a
//!   minimum-data guard for sparse canaries.
//!
//! Both take the run's *cumulative* [`Counts`] at each look, return
//! [`Evidence`] (estimate, bounds, samples, [`Status`]), never allocate and
//! never panic on any counts. They keep no state between looks: the
//! cumulative counts are all they need. The running bound (intersection
//! over looks) is kept by the caller with the run's evidence.
//!
//! Guarantee per check with budget α (each direction separately):
//! `P(ever ProvenFailing | truly passing) ≤ α` and
//! `P(ever ProvenPassing | truly failing) ≤ α`. Split a run's α over its k
//! checks as α/k.
//!
//! The statistics depend on `std` only: no I/O, no runtime, no other
//! module of verdict.

mod difference;
mod proportion;
mod special;
mod types;

pub use difference::DifferenceCheck;
pub use proportion::ProportionCheck;
pub use types::{Counts, Direction, Evidence, Status};

#[cfg(test)]
mod tests;
