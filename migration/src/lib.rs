//! Append-only schema migrations for quire, shared by SQLite and PostgreSQL.
//!
//! Never edit a migration that has shipped; add a new one.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_content;
mod m20261123_000010_rate_limit_state;
mod m20261128_000020_content_generations;
mod m20261128_000030_key_graces;
mod m20261128_000040_events;
mod m20261128_000050_files;
mod m20261128_000060_search;
mod m20261128_000070_schedules_versions;
mod m20261128_000080_key_usage;
mod m20261129_000090_search_views;
mod m20261129_000100_search_doc_ids;

/// The ordered list of quire's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_content::Migration),
            Box::new(m20261123_000010_rate_limit_state::Migration),
            Box::new(m20261128_000020_content_generations::Migration),
            Box::new(m20261128_000030_key_graces::Migration),
            Box::new(m20261128_000040_events::Migration),
            Box::new(m20261128_000050_files::Migration),
            Box::new(m20261128_000060_search::Migration),
            Box::new(m20261128_000070_schedules_versions::Migration),
            Box::new(m20261128_000080_key_usage::Migration),
            Box::new(m20261129_000090_search_views::Migration),
            Box::new(m20261129_000100_search_doc_ids::Migration),
        ]
    }
}
