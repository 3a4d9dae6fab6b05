//! Validation contracts: how the figures of a window (or a run) are judged
//! against a contract's thresholds ([`evaluate`]). Which resources a contract
//! selects is part of its spec ([`crate::config::ContractSpec::select`]).

pub mod evaluate;
pub mod evidence;
pub mod sequential;

pub use evaluate::evaluate_window;
