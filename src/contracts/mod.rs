//! Validation contracts: which resources a contract selects and how a subject
//! is named ([`select`]), and how a window's figures are judged against the
//! thresholds ([`evaluate`]).

pub mod evaluate;

pub use evaluate::evaluate_window;
