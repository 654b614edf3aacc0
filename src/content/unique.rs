//! The unique side table: each value of a unique field that a record holds,
//! in its draft or its published data, is a row whose primary key refuses
//! duplicates, rewritten in the same transaction as the record.

use std::collections::BTreeSet;

use entity::{record_unique_values, records};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use serde_json::Value;

use super::fields::{unique_text, FieldDef};
use super::schema::ContentModel;
use super::sql::Sql;
use crate::error::{AppError, AppResult};

/// The `(field, canonical value)` pairs of unique `fields` that a record
/// holds in its draft or its published data, each once.
pub fn unique_entries(
    fields: &[FieldDef],
    draft: &Value,
    published: Option<&Value>,
) -> BTreeSet<(String, String)> {
    let mut entries = BTreeSet::new();
    for field in fields.iter().filter(|f| f.unique) {
        for data in std::iter::once(draft).chain(published) {
            if let Some(text) = data
                .get(&field.name)
                .and_then(|v| unique_text(field.field_type, v))
            {
                entries.insert((field.name.clone(), text));
            }
        }
    }
    entries
}

/// Brings the record's rows in the unique side table from what `old` (the
/// record before this write; `None` for a new one) held to what `row`
/// holds: one statement for the values it no longer holds, one for those it
/// now holds, none when nothing changed. A value another record holds is
/// `BAD_USER_INPUT` naming its field (the first such field of the model).
pub(crate) async fn sync_unique_values<C: ConnectionTrait>(
    db: &C,
    model: &ContentModel,
    old: Option<&records::Model>,
    row: &records::Model,
) -> AppResult<()> {
    if !model.fields.iter().any(|f| f.unique) {
        return Ok(());
    }
    let before = old
        .map(|o| unique_entries(&model.fields, &o.draft_data, o.published_data.as_ref()))
        .unwrap_or_default();
    let after = unique_entries(&model.fields, &row.draft_data, row.published_data.as_ref());
    let backend = db.get_database_backend();
    let gone: Vec<_> = before.difference(&after).collect();
    if !gone.is_empty() {
        let mut sql = Sql::new(backend);
        sql.push("DELETE FROM record_unique_values WHERE model_id = ");
        sql.bind(model.row.id.clone());
        sql.push(" AND record_id = ");
        sql.bind(row.id.clone());
        sql.push(" AND (");
        for (i, (field, value)) in gone.iter().enumerate() {
            sql.push(if i == 0 { "(field = " } else { " OR (field = " });
            sql.bind(field.clone());
            sql.push(" AND value_text = ");
            sql.bind(value.clone());
            sql.push(")");
        }
        sql.push(")");
        db.execute(sql.into_statement()).await?;
    }
    let new: BTreeSet<_> = after.difference(&before).collect();
    if new.is_empty() {
        return Ok(());
    }
    // A value held by another record is skipped, not an error (which would
    // end the whole transaction on PostgreSQL): what was not inserted is
    // what another record holds.
    let mut sql = Sql::new(backend);
    sql.push("INSERT INTO record_unique_values (model_id, field, value_text, record_id) VALUES ");
    for (i, (field, value)) in new.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" });
        sql.bind(model.row.id.clone());
        sql.push(", ");
        sql.bind(field.clone());
        sql.push(", ");
        sql.bind(value.clone());
        sql.push(", ");
        sql.bind(row.id.clone());
        sql.push(")");
    }
    sql.push(" ON CONFLICT DO NOTHING RETURNING field, value_text");
    let inserted = db.query_all(sql.into_statement()).await?;
    if inserted.len() == new.len() {
        return Ok(());
    }
    let mut taken = new.clone();
    for r in &inserted {
        let entry = (
            r.try_get::<String>("", "field")?,
            r.try_get::<String>("", "value_text")?,
        );
        taken.remove(&entry);
    }
    let field = model
        .fields
        .iter()
        .find(|f| taken.iter().any(|(name, _)| *name == f.name))
        .map_or_else(|| "data".to_owned(), |f| f.name.clone());
    Err(AppError::bad_field(
        field.clone(),
        format!(
            "field \"{field}\" is unique and another \"{}\" record already holds this value",
            model.key()
        ),
    ))
}

/// Makes `field` unique: writes every record's values into the unique side
/// table, whose primary key refuses the first duplicate.
pub(crate) async fn make_unique<C: ConnectionTrait>(
    db: &C,
    model: &ContentModel,
    field: &FieldDef,
) -> AppResult<()> {
    const BATCH: u64 = 500;
    let mut after = String::new();
    loop {
        let batch = records::Entity::find()
            .filter(records::Column::ModelId.eq(&model.row.id))
            .filter(records::Column::Id.gt(after.clone()))
            .order_by_asc(records::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        for record in &batch {
            let only_this = [field.clone()];
            let entries = unique_entries(
                &only_this,
                &record.draft_data,
                record.published_data.as_ref(),
            );
            for (_, value_text) in entries {
                let inserted =
                    record_unique_values::Entity::insert(record_unique_values::ActiveModel {
                        model_id: Set(model.row.id.clone()),
                        field: Set(field.name.clone()),
                        value_text: Set(value_text.clone()),
                        record_id: Set(record.id.clone()),
                    })
                    .exec_without_returning(db)
                    .await;
                if let Err(e) = inserted {
                    if let Some(SqlErr::UniqueConstraintViolation(_)) = e.sql_err() {
                        return Err(AppError::bad_field(
                            "fields",
                            format!(
                                "field \"{}\" cannot be unique: record {} shares its value \
                                 with another record of \"{}\"",
                                field.name, record.id, model.row.key
                            ),
                        ));
                    }
                    return Err(e.into());
                }
            }
        }
        match batch.last() {
            Some(last) if batch.len() as u64 == BATCH => after = last.id.clone(),
            _ => return Ok(()),
        }
    }
}
