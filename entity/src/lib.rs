//! sea-orm entities for quire's tables, one module per table and nothing else.

pub mod api_keys;
pub mod audit_events;
pub mod key_changes;
pub mod markers;
pub mod projects;
