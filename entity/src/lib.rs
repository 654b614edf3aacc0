//! sea-orm entities for quire's tables, one module per table and nothing else.

pub mod api_key_graces;
pub mod api_keys;
pub mod audit_events;
pub mod content_generations;
pub mod event_heads;
pub mod events;
pub mod files;
pub mod key_changes;
pub mod key_usage_daily;
pub mod key_usage_hourly;
pub mod kinds;
pub mod markers;
pub mod models;
pub mod projects;
pub mod record_unique_values;
pub mod record_versions;
pub mod records;
pub mod schedules;
pub mod server_secrets;
pub mod webhook_deliveries;
pub mod webhooks;
