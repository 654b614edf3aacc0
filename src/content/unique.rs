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

/// Rewrites the record's rows in the unique side table; the first value
/// another record holds is `BAD_USER_INPUT` naming its field.
pub(crate) async fn sync_unique_values<C: ConnectionTrait>(
    db: &C,
    model: &ContentModel,
    row: &records::Model,
) -> AppResult<()> {
    if !model.fields.iter().any(|f| f.unique) {
        return Ok(());
    }
    record_unique_values::Entity::delete_many()
        .filter(record_unique_values::Column::RecordId.eq(&row.id))
        .exec(db)
        .await?;
    let entries = unique_entries(&model.fields, &row.draft_data, row.published_data.as_ref());
    // Insert in the model's field order, so the error names the first field.
    for field in model.fields.iter().filter(|f| f.unique) {
        for (_, value_text) in entries.iter().filter(|(name, _)| *name == field.name) {
            let inserted =
                record_unique_values::Entity::insert(record_unique_values::ActiveModel {
                    model_id: Set(model.row.id.clone()),
                    field: Set(field.name.clone()),
                    value_text: Set(value_text.clone()),
                    record_id: Set(row.id.clone()),
                })
                .exec_without_returning(db)
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    return Err(AppError::bad_field(
                        field.name.clone(),
                        format!(
                            "field \"{}\" is unique and another \"{}\" record already holds this value",
                            field.name,
                            model.key()
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
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
