//! Schedules and versions (SPEC §11): a record's future (publish or
//! unpublish at a set time) and its past (the kept versions, restorable).
//!
//! | module | holds |
//! |---|---|
//! | [`service`] | [`ScheduleService`], the one door: the rules of scheduling, canceling and listing, listing and restoring versions; announces what it committed |
//! | [`runner`] | the poll every instance runs: claims each due schedule and does its publish or unpublish in one transaction, exactly once across instances |
//!
//! The versions themselves are kept by the record writes
//! ([`crate::content::versions`]), in their transactions.

pub mod runner;
pub mod service;

pub use service::ScheduleService;

/// Pending schedules a project may hold at once.
pub const MAX_PENDING_PER_PROJECT: u64 = 500;

/// How far ahead a schedule may be set, in months (5 years).
pub const MAX_AHEAD_MONTHS: u32 = 60;
