//! The search index (SPEC §8): one document per record per view in
//! `search_docs` (on PostgreSQL with its `tsvector` and a GIN index; on
//! SQLite with a contentless FTS5 table, `search_fts`, whose rowid is the
//! document's id; the project and view are `search_docs`' columns, read
//! after the match), each view's vocabulary (`search_terms`) and its version
//! (`search_vocab`). Every project that holds records is queued in
//! `search_reindex`: quire builds their index right after migrating (its
//! words are folded in Rust, the same way for both databases, so plain SQL
//! cannot build it here).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS search_docs (
        id INTEGER PRIMARY KEY,
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        record_id TEXT NOT NULL,
        model_id TEXT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS search_docs_record ON search_docs (record_id, view)",
    "CREATE INDEX IF NOT EXISTS search_docs_project ON search_docs (project_id, view)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
        strong, weak,
        content = '', contentless_delete = 1, tokenize = 'ascii', prefix = '2 3 4')",
    "CREATE TABLE IF NOT EXISTS search_terms (
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        term TEXT NOT NULL,
        PRIMARY KEY (project_id, view, term)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS search_vocab (
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (project_id, view))",
    "CREATE TABLE IF NOT EXISTS search_reindex (project_id TEXT NOT NULL PRIMARY KEY)",
    "INSERT INTO search_reindex (project_id)
        SELECT DISTINCT project_id FROM records WHERE true
        ON CONFLICT (project_id) DO NOTHING",
];

const POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS search_docs (
        id BIGSERIAL PRIMARY KEY,
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        record_id TEXT NOT NULL,
        model_id TEXT NOT NULL,
        tsv TSVECTOR NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS search_docs_record ON search_docs (record_id, view)",
    "CREATE INDEX IF NOT EXISTS search_docs_project ON search_docs (project_id, view)",
    "CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING GIN (tsv)",
    "CREATE TABLE IF NOT EXISTS search_terms (
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        term TEXT NOT NULL,
        PRIMARY KEY (project_id, view, term))",
    "CREATE TABLE IF NOT EXISTS search_vocab (
        project_id TEXT NOT NULL,
        view TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (project_id, view))",
    "CREATE TABLE IF NOT EXISTS search_reindex (project_id TEXT NOT NULL PRIMARY KEY)",
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
        for table in [
            "search_reindex",
            "search_vocab",
            "search_terms",
            "search_fts",
            "search_docs",
        ] {
            if table == "search_fts" && db.get_database_backend() == DbBackend::Postgres {
                continue;
            }
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}
