//! Rebuilding the index of a project from its records: `quire admin search
//! reindex`, and, after the migration that created the index, once for
//! every project that had records then (the migration queues them in
//! `search_reindex`; the folding is Rust's, so SQL alone cannot do it).

use std::collections::HashMap;

use entity::records;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::index::{write_doc, Side, TextFields};
use crate::db::{begin_write, Database};
use crate::error::AppResult;

/// Records read at a time.
const BATCH: u64 = 500;

/// Rebuilds the index of `project_id` in the caller's transaction; returns
/// how many records it indexed.
pub async fn reindex_project<C: ConnectionTrait>(db: &C, project_id: &str) -> AppResult<u64> {
    let backend = db.get_database_backend();
    let p = |n: usize| {
        if backend == DbBackend::Postgres {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    };
    let mut statements = Vec::new();
    if backend == DbBackend::Sqlite {
        statements.push(
            "DELETE FROM search_fts WHERE rowid IN \
             (SELECT id FROM search_docs WHERE project_id = ?)"
                .to_owned(),
        );
        statements
            .push("UPDATE search_tags SET docs = 0, words = 0 WHERE project_id = ?".to_owned());
    }
    statements.push(format!(
        "DELETE FROM search_docs WHERE project_id = {}",
        p(1)
    ));
    statements.push(format!(
        "DELETE FROM search_terms WHERE project_id = {}",
        p(1)
    ));
    // Versions only grow: a cached vocabulary never matches a rebuilt one.
    statements.push(format!(
        "UPDATE search_vocab SET version = version + 1 WHERE project_id = {}",
        p(1)
    ));
    for sql in statements {
        db.execute(Statement::from_sql_and_values(
            backend,
            sql,
            [project_id.into()],
        ))
        .await?;
    }
    let models: HashMap<String, TextFields> = entity::models::Entity::find()
        .filter(entity::models::Column::ProjectId.eq(project_id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.id.clone(), TextFields::of(&m)))
        .collect();
    // Cached published-view answers (searches included) start over.
    crate::readcache::bump_generation(db, project_id).await?;
    let mut last = String::new();
    let mut count = 0;
    loop {
        let batch = records::Entity::find()
            .filter(records::Column::ProjectId.eq(project_id))
            .filter(records::Column::Id.gt(last.clone()))
            .order_by_asc(records::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        let Some(tail) = batch.last() else {
            break;
        };
        last = tail.id.clone();
        for record in &batch {
            let Some(fields) = models.get(&record.model_id).filter(|f| !f.is_empty()) else {
                continue;
            };
            write_doc(
                db,
                fields,
                record,
                Side::Draft,
                Some(&record.draft_data),
                true,
            )
            .await?;
            let published = record.published_data.as_ref();
            write_doc(db, fields, record, Side::Published, published, true).await?;
            count += 1;
        }
    }
    Ok(count)
}

/// Rebuilds, each in its own transaction, the projects the migration
/// queued; an instance that finds one already taken by another skips it.
pub async fn run_pending(db: &Database) -> AppResult<()> {
    let backend = db.backend();
    let pending = db
        .conn
        .query_all(Statement::from_string(
            backend,
            "SELECT project_id FROM search_reindex",
        ))
        .await?;
    for row in pending {
        let project_id: String = row.try_get("", "project_id")?;
        let txn = begin_write(&db.writer).await?;
        let ph = if backend == DbBackend::Postgres {
            "$1"
        } else {
            "?"
        };
        let taken = txn
            .execute(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM search_reindex WHERE project_id = {ph}"),
                [project_id.clone().into()],
            ))
            .await?
            .rows_affected();
        if taken == 0 {
            continue;
        }
        let count = reindex_project(&txn, &project_id).await?;
        txn.commit().await?;
        tracing::info!(project_id, records = count, "search index built");
    }
    Ok(())
}
