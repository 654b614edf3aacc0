//! Field definitions: what a model may declare, and what each field type
//! accepts as a value (and in which canonical form it is stored).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AppError, AppResult};

/// Longest model key or field name, in characters.
pub const MAX_IDENTIFIER_CHARS: usize = 64;
/// Longest model name, in characters.
pub const MAX_MODEL_NAME_CHARS: usize = 100;
/// Most fields a model may have.
pub const MAX_FIELDS: usize = 100;
/// Longest `STRING` value, in characters (`TEXT` is for longer prose). Keeps
/// unique values within what a B-tree index entry may hold.
pub const MAX_STRING_CHARS: usize = 512;

/// Names the record itself uses in `orderBy` and in the API, so no field may
/// take them.
const RESERVED_NAMES: &[&str] = &[
    "id",
    "createdAt",
    "updatedAt",
    "publishedAt",
    "status",
    "version",
    "modelKey",
];

/// The type of a field, with the wire names of `FieldType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldType {
    /// A short string (at most [`MAX_STRING_CHARS`] characters).
    String,
    /// Long text.
    Text,
    /// A whole number that fits in 64 bits.
    Integer,
    /// Any JSON number.
    Number,
    Boolean,
    /// An RFC 3339 instant, stored as UTC with milliseconds
    /// (`2026-11-23T10:00:00.000Z`), so stored values sort as text.
    Datetime,
    /// Any JSON value.
    Json,
    /// The id (a string) of a record of `referenceModelKey`.
    Reference,
    /// The id (a string) of a file of the same project (SPEC §7).
    File,
}

impl FieldType {
    /// The wire name, e.g. `STRING`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "STRING",
            FieldType::Text => "TEXT",
            FieldType::Integer => "INTEGER",
            FieldType::Number => "NUMBER",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Datetime => "DATETIME",
            FieldType::Json => "JSON",
            FieldType::Reference => "REFERENCE",
            FieldType::File => "FILE",
        }
    }

    /// Whether `unique` may be set: scalar values short enough to index.
    pub fn allows_unique(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Integer
                | FieldType::Number
                | FieldType::Datetime
                | FieldType::Reference
        )
    }

    /// Whether `gt gte lt lte` and `orderBy` make sense.
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Text
                | FieldType::Integer
                | FieldType::Number
                | FieldType::Datetime
        )
    }

    /// Whether `eq ne in` compare values (JSON fields only test for null).
    pub fn is_comparable(self) -> bool {
        self != FieldType::Json
    }

    /// Whether `contains` applies.
    pub fn is_textual(self) -> bool {
        matches!(self, FieldType::String | FieldType::Text)
    }
}

/// One field of a model, as stored in `models.fields`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_model_key: Option<String>,
}

/// Whether `s` is a stable identifier: `[a-z][a-zA-Z0-9_]*`, at most 64
/// characters. Model keys and field names are; that is also what makes a
/// field name safe to write into a JSON path of a query.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= MAX_IDENTIFIER_CHARS
}

/// Refuses a model key or field name that is not an identifier.
pub fn check_identifier(input_field: &str, what: &str, s: &str) -> AppResult<()> {
    if is_identifier(s) {
        Ok(())
    } else {
        Err(AppError::bad_field(
            input_field,
            format!(
                "{what} \"{s}\" must match [a-z][a-zA-Z0-9_]* and be at most \
                 {MAX_IDENTIFIER_CHARS} characters"
            ),
        ))
    }
}

/// Checks a model's field list on its own (reference targets are checked by
/// the model service, which can see the project's models).
pub fn check_field_defs(fields: &[FieldDef]) -> AppResult<()> {
    if fields.len() > MAX_FIELDS {
        return Err(AppError::bad_field(
            "fields",
            format!("a model has at most {MAX_FIELDS} fields"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in fields {
        check_identifier("fields", "field name", &f.name)?;
        if RESERVED_NAMES.contains(&f.name.as_str()) {
            return Err(AppError::bad_field(
                "fields",
                format!("field name \"{}\" is reserved", f.name),
            ));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(AppError::bad_field(
                "fields",
                format!("field \"{}\" is declared twice", f.name),
            ));
        }
        if f.unique && !f.field_type.allows_unique() {
            return Err(AppError::bad_field(
                "fields",
                format!(
                    "field \"{}\": a {} field cannot be unique (STRING, INTEGER, NUMBER, \
                     DATETIME and REFERENCE fields can)",
                    f.name,
                    f.field_type.as_str()
                ),
            ));
        }
        match (&f.field_type, &f.reference_model_key) {
            (FieldType::Reference, None) => {
                return Err(AppError::bad_field(
                    "fields",
                    format!(
                        "field \"{}\": a REFERENCE field needs referenceModelKey",
                        f.name
                    ),
                ))
            }
            (FieldType::Reference, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(AppError::bad_field(
                    "fields",
                    format!(
                        "field \"{}\": referenceModelKey is only for REFERENCE fields",
                        f.name
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Checks one non-null value against its field's type and returns it in
/// canonical form (DATETIME values normalized to UTC milliseconds).
/// `label` says where the value came from, for the message.
pub fn normalize(field: &FieldDef, value: &Value, error_field: &str) -> AppResult<Value> {
    let wrong = |expected: &str| {
        AppError::bad_field(
            error_field,
            format!(
                "field \"{}\" expects {expected}, got {}",
                field.name,
                describe(value)
            ),
        )
    };
    match field.field_type {
        FieldType::String => match value.as_str() {
            Some(s) if s.chars().count() > MAX_STRING_CHARS => Err(AppError::bad_field(
                error_field,
                format!(
                    "field \"{}\" holds at most {MAX_STRING_CHARS} characters (use TEXT for longer text)",
                    field.name
                ),
            )),
            Some(_) => Ok(value.clone()),
            None => Err(wrong("a string")),
        },
        FieldType::Text | FieldType::Reference | FieldType::File => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(wrong("a string")),
        },
        FieldType::Integer => match value.as_i64() {
            Some(_) => Ok(value.clone()),
            None => Err(wrong("an integer")),
        },
        FieldType::Number => match value {
            Value::Number(_) => Ok(value.clone()),
            _ => Err(wrong("a number")),
        },
        FieldType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => Err(wrong("a boolean")),
        },
        FieldType::Datetime => {
            let parsed = value
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .ok_or_else(|| wrong("an RFC 3339 date-time such as 2026-11-23T10:00:00Z"))?;
            Ok(Value::String(
                parsed
                    .with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ))
        }
        FieldType::Json => Ok(value.clone()),
    }
}

/// The canonical text of a unique field's value, as the unique side table
/// holds it (so `1` and `1.0` of a NUMBER field collide).
pub fn unique_text(field_type: FieldType, value: &Value) -> Option<String> {
    match (field_type, value) {
        (_, Value::Null) => None,
        (_, Value::String(s)) => Some(s.clone()),
        (FieldType::Integer, Value::Number(n)) => n.as_i64().map(|i| i.to_string()),
        (_, Value::Number(n)) => n.as_f64().map(|f| {
            if f == 0.0 {
                "0".to_owned()
            } else {
                f.to_string()
            }
        }),
        (_, other) => Some(other.to_string()),
    }
}

/// A short description of a JSON value's type, for error messages (never the
/// value itself).
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(t: FieldType) -> FieldDef {
        FieldDef {
            name: "f".into(),
            field_type: t,
            required: false,
            unique: false,
            reference_model_key: None,
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("page"));
        assert!(is_identifier("blogPost_2"));
        assert!(!is_identifier("Page"));
        assert!(!is_identifier("2page"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier("a'b"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(&"a".repeat(65)));
    }

    #[test]
    fn datetimes_normalize_to_utc_millis() {
        let f = field(FieldType::Datetime);
        assert_eq!(
            normalize(&f, &json!("2026-11-23T12:00:00+02:00"), "data").unwrap(),
            json!("2026-11-23T10:00:00.000Z")
        );
        assert!(normalize(&f, &json!("2026-11-23 10:00"), "data").is_err());
        assert!(normalize(&f, &json!(5), "data").is_err());
    }

    #[test]
    fn integers_are_whole() {
        let f = field(FieldType::Integer);
        assert!(normalize(&f, &json!(3), "data").is_ok());
        assert!(normalize(&f, &json!(3.5), "data").is_err());
        assert!(normalize(&f, &json!("3"), "data").is_err());
    }

    #[test]
    fn unique_text_is_canonical() {
        assert_eq!(
            unique_text(FieldType::Number, &json!(1.0)).as_deref(),
            Some("1")
        );
        assert_eq!(
            unique_text(FieldType::Number, &json!(1)).as_deref(),
            Some("1")
        );
        assert_eq!(
            unique_text(FieldType::Integer, &json!(-4)).as_deref(),
            Some("-4")
        );
        assert_eq!(
            unique_text(FieldType::String, &json!("a")).as_deref(),
            Some("a")
        );
        assert_eq!(unique_text(FieldType::String, &Value::Null), None);
    }
}
