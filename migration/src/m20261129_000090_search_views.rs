//! The SQLite search index, partitioned by project and view (SPEC §8).
//!
//! Each `(project, view)` gets a short tag (`search_tags`), and every token
//! in `search_fts` is written behind its view's tag, so an FTS5 match reads
//! only the posting lists of the project's view (a one-project database no
//! longer pays for the other view, a small project never for a large one).
//! `search_docs` keeps each document's folded words (`strong`, `weak`) and
//! length, from which quire ranks the candidates (BM25) itself; the tag's
//! row counts the view's documents and words (BM25's N and average length).
//!
//! On PostgreSQL, `search_docs` gains the same words and length beside its
//! `tsvector`, and quire ranks there the same way.
//!
//! The old FTS5 table is dropped and every project with records is queued
//! in `search_reindex`, which quire rebuilds right after migrating.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    "DROP TABLE IF EXISTS search_fts",
    "CREATE VIRTUAL TABLE search_fts USING fts5(
        strong, weak,
        content = '', contentless_delete = 1,
        tokenize = \"ascii tokenchars '_'\", prefix = '8 9 10')",
    "DELETE FROM search_docs",
    "ALTER TABLE search_docs ADD COLUMN strong TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE search_docs ADD COLUMN weak TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE search_docs ADD COLUMN len INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE IF NOT EXISTS search_tags (
        tag INTEGER PRIMARY KEY,
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        docs INTEGER NOT NULL DEFAULT 0,
        words INTEGER NOT NULL DEFAULT 0)",
    "CREATE UNIQUE INDEX IF NOT EXISTS search_tags_view ON search_tags (project_id, view)",
    "INSERT INTO search_reindex (project_id)
        SELECT DISTINCT project_id FROM records WHERE true
        ON CONFLICT (project_id) DO NOTHING",
];

const POSTGRES: &[&str] = &[
    "ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS strong TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS weak TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS len INTEGER NOT NULL DEFAULT 0",
    "INSERT INTO search_reindex (project_id)
        SELECT DISTINCT project_id FROM records
        ON CONFLICT (project_id) DO NOTHING",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements = match db.get_database_backend() {
            DbBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for column in ["len", "weak", "strong"] {
                db.execute_unprepared(&format!(
                    "ALTER TABLE search_docs DROP COLUMN IF EXISTS {column}"
                ))
                .await?;
            }
            return Ok(());
        }
        for sql in [
            "DROP TABLE IF EXISTS search_tags",
            "DROP TABLE IF EXISTS search_fts",
            "DELETE FROM search_docs",
            "ALTER TABLE search_docs DROP COLUMN len",
            "ALTER TABLE search_docs DROP COLUMN weak",
            "ALTER TABLE search_docs DROP COLUMN strong",
            "CREATE VIRTUAL TABLE search_fts USING fts5(
                strong, weak,
                content = '', contentless_delete = 1, tokenize = 'ascii', prefix = '2 3 4')",
            "INSERT INTO search_reindex (project_id)
                SELECT DISTINCT project_id FROM records WHERE true
                ON CONFLICT (project_id) DO NOTHING",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
