//! SQLite's `search_docs` gets `AUTOINCREMENT`: a document's id (also its
//! FTS5 rowid) is never given to another document, even after the newest
//! one is deleted, so quire may keep documents read for ranking by id
//! (`quire::search::hits`). The table is copied with its ids, so
//! `search_fts` stays as it is. PostgreSQL's ids come from a sequence,
//! which never gives one twice: nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: &str = "id, project_id, view, record_id, model_id, strong, weak, len";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            return Ok(());
        }
        for sql in [
            "ALTER TABLE search_docs RENAME TO search_docs_old",
            "DROP INDEX IF EXISTS search_docs_record",
            "DROP INDEX IF EXISTS search_docs_project",
            "CREATE TABLE search_docs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                project_id TEXT NOT NULL,
                view TEXT NOT NULL,
                record_id TEXT NOT NULL,
                model_id TEXT NOT NULL,
                strong TEXT NOT NULL DEFAULT '',
                weak TEXT NOT NULL DEFAULT '',
                len INTEGER NOT NULL DEFAULT 0)",
            &format!("INSERT INTO search_docs ({COLUMNS}) SELECT {COLUMNS} FROM search_docs_old"),
            "DROP TABLE search_docs_old",
            "CREATE UNIQUE INDEX search_docs_record ON search_docs (record_id, view)",
            "CREATE INDEX search_docs_project ON search_docs (project_id, view)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Ids that are never reused harm nothing older.
        Ok(())
    }
}
