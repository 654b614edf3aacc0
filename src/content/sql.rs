//! The content SQL builder: statements assembled from fixed fragments,
//! field names that passed [`is_identifier`] (so they can sit inside a JSON
//! path literal) and bound values; user input is never written into the SQL
//! text. Typed expressions for a field's value in the draft or the published
//! data (SQLite JSON functions, PostgreSQL `jsonb`).

use sea_orm::{DbBackend, Statement};
use serde_json::Value;

use super::fields::{is_identifier, FieldDef, FieldType};
use super::View;
use crate::error::{AppError, AppResult};

/// SQL text with its bound values; placeholders are written in the
/// backend's style (`?` or `$n`) only when the statement is built, so pieces
/// can be assembled separately and appended.
pub struct Sql {
    pub(crate) backend: DbBackend,
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Value(sea_orm::Value),
}

impl Sql {
    /// Empty SQL for `backend`.
    pub fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            parts: Vec::new(),
        }
    }

    /// Appends fixed SQL text.
    pub fn push(&mut self, sql: &str) {
        self.parts.push(Part::Text(sql.to_owned()));
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<sea_orm::Value>) {
        self.parts.push(Part::Value(value.into()));
    }

    /// The statement to run.
    pub fn into_statement(self) -> Statement {
        let mut text = String::new();
        let mut values = Vec::new();
        for part in self.parts {
            match part {
                Part::Text(t) => text.push_str(&t),
                Part::Value(v) => {
                    values.push(v);
                    match self.backend {
                        DbBackend::Postgres => text.push_str(&format!("${}", values.len())),
                        _ => text.push('?'),
                    }
                }
            }
        }
        Statement::from_sql_and_values(self.backend, text, values)
    }

    /// Appends another piece, with its bound values.
    pub fn append(&mut self, other: &Sql) {
        for part in &other.parts {
            self.parts.push(match part {
                Part::Text(t) => Part::Text(t.clone()),
                Part::Value(v) => Part::Value(v.clone()),
            });
        }
    }
}

/// Which data column an expression reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataColumn {
    Draft,
    Published,
}

impl DataColumn {
    /// The column a view reads.
    pub fn of(view: View) -> Self {
        match view {
            View::Draft => DataColumn::Draft,
            View::Published => DataColumn::Published,
        }
    }

    /// The column, as the `records r` queries name it.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            DataColumn::Draft => "r.draft_data",
            DataColumn::Published => "r.published_data",
        }
    }
}

/// The SQL expression for a field's value in a data column, typed so that
/// comparisons and orderings follow the field type (text compares bytewise
/// on both databases). `NULL` when the field is missing or null.
pub fn data_expr(backend: DbBackend, column: DataColumn, field: &FieldDef) -> AppResult<String> {
    if !is_identifier(&field.name) {
        return Err(AppError::internal(format!(
            "field name {:?} is not an identifier",
            field.name
        )));
    }
    let col = column.sql();
    let name = &field.name;
    Ok(match backend {
        DbBackend::Postgres => match field.field_type {
            FieldType::Integer => format!("(({col} ->> '{name}')::bigint)"),
            FieldType::Number => format!("(({col} ->> '{name}')::double precision)"),
            FieldType::Boolean => format!("(({col} ->> '{name}')::boolean)"),
            FieldType::Json => format!("({col} -> '{name}')"),
            FieldType::String
            | FieldType::Text
            | FieldType::Datetime
            | FieldType::Reference
            | FieldType::File => {
                format!("(({col} ->> '{name}') COLLATE \"C\")")
            }
        },
        _ => format!("json_extract({col}, '$.{name}')"),
    })
}

/// A field's value as a bound SQL value.
pub fn sql_value(field: &FieldDef, value: &Value) -> sea_orm::Value {
    match (field.field_type, value) {
        (FieldType::Integer, v) => sea_orm::Value::BigInt(v.as_i64()),
        (FieldType::Number, v) => sea_orm::Value::Double(v.as_f64()),
        (FieldType::Boolean, v) => sea_orm::Value::Bool(v.as_bool()),
        (_, Value::String(s)) => s.clone().into(),
        (_, v) => v.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, field_type: FieldType) -> FieldDef {
        FieldDef {
            name: name.into(),
            field_type,
            required: false,
            unique: false,
            reference_model_key: None,
        }
    }

    #[test]
    fn placeholders_follow_the_backend() {
        for (backend, expected) in [
            (DbBackend::Sqlite, "a = ? AND b IN (?, ?)"),
            (DbBackend::Postgres, "a = $1 AND b IN ($2, $3)"),
        ] {
            let mut head = Sql::new(backend);
            head.push("a = ");
            head.bind(1_i64);
            let mut tail = Sql::new(backend);
            tail.push(" AND b IN (");
            tail.bind("x");
            tail.push(", ");
            tail.bind("y");
            tail.push(")");
            head.append(&tail);
            let statement = head.into_statement();
            assert_eq!(statement.sql, expected);
            assert_eq!(statement.values.map(|v| v.0.len()), Some(3));
        }
    }

    #[test]
    fn field_expressions_are_typed_and_never_take_raw_names() {
        let title = field("title", FieldType::String);
        assert_eq!(
            data_expr(DbBackend::Sqlite, DataColumn::Published, &title).ok(),
            Some("json_extract(r.published_data, '$.title')".to_owned())
        );
        assert_eq!(
            data_expr(DbBackend::Postgres, DataColumn::Draft, &title).ok(),
            Some("((r.draft_data ->> 'title') COLLATE \"C\")".to_owned())
        );
        assert_eq!(
            data_expr(
                DbBackend::Postgres,
                DataColumn::Draft,
                &field("n", FieldType::Integer)
            )
            .ok(),
            Some("((r.draft_data ->> 'n')::bigint)".to_owned())
        );
        let hostile = field("x') OR 1=1 --", FieldType::String);
        assert!(data_expr(DbBackend::Sqlite, DataColumn::Draft, &hostile).is_err());
        assert!(data_expr(DbBackend::Postgres, DataColumn::Draft, &hostile).is_err());
    }

    #[test]
    fn values_bind_as_their_field_type() {
        let n = field("n", FieldType::Integer);
        assert_eq!(
            sql_value(&n, &serde_json::json!(7)),
            sea_orm::Value::BigInt(Some(7))
        );
        let flag = field("f", FieldType::Boolean);
        assert_eq!(
            sql_value(&flag, &serde_json::json!(true)),
            sea_orm::Value::Bool(Some(true))
        );
        let s = field("s", FieldType::String);
        assert_eq!(
            sql_value(&s, &serde_json::json!("a")),
            sea_orm::Value::from("a")
        );
    }
}
