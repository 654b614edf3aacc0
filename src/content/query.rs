//! The `records` query: `where`, `orderBy`, keyset cursors and counts, all
//! run in the database (SQLite JSON functions, PostgreSQL `jsonb`).
//!
//! The SQL is assembled with [`super::sql`]; user input is never written
//! into the SQL text.
//!
//! Bounds, checked before any SQL is built: `in` takes at most
//! [`MAX_IN_VALUES`] values, a `where` holds at most
//! [`MAX_WHERE_CONDITIONS`] conditions and [`MAX_WHERE_BYTES`] of JSON text.
//!
//! Record data is loaded in two steps so that its memory is admitted
//! before it is spent: the page query brings each record's data size, and
//! the data itself only when it is small ([`INLINE_DATA_BYTES`]); the
//! request's [`AnswerBudget`] is charged with the sizes, then the large
//! data is loaded one record at a time. Data is read as the JSON text the
//! database holds and handed to the answer as it is ([`RecordData::Text`]):
//! a page of records is checked, not parsed into a tree and written back.
//!
//! Orderings: `null` (a missing field) sorts after every value, ascending
//! and before every value descending, like PostgreSQL's default; ties are
//! broken by `id` in the direction of the last term. A cursor holds the sort
//! values and id of the last row of a page; the next page starts strictly
//! after it (a seek, never an OFFSET), so inserts cannot shift it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use entity::records::{self, RecordStatus};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::budget::AnswerBudget;
use super::fields::{normalize, unique_text, FieldDef};
use super::records::{RecordData, RecordOut};
use super::schema::{require_model, ContentModel};
use super::sql::{data_expr, sql_value, DataColumn, Sql};
use super::View;
use crate::error::{AppError, AppResult};

/// Smallest and largest page size.
pub const LIMITS: std::ops::RangeInclusive<i64> = 1..=100;
/// The page size when none (or null) is given.
pub const DEFAULT_LIMIT: i64 = 20;
/// Most `orderBy` terms.
pub const MAX_ORDER_TERMS: usize = 5;
/// Most values of one `in` (both databases bind each one; SQLite stops at
/// 32,766 parameters and PostgreSQL at 65,535).
pub const MAX_IN_VALUES: usize = 1_000;
/// Most conditions in one `where`: a field's value counts one, and so does
/// each operator of a field's operator object.
pub const MAX_WHERE_CONDITIONS: usize = 100;
/// Largest `where`, as compact JSON text.
pub const MAX_WHERE_BYTES: usize = 64 * 1024;
/// Record data of at most this many bytes comes with the page query;
/// larger data is loaded after the answer budget has admitted it.
pub const INLINE_DATA_BYTES: usize = 64 * 1024;

/// One `orderBy` term as the API takes it.
#[derive(Clone, Debug)]
pub struct OrderTerm {
    pub field: String,
    pub descending: bool,
}

/// What to list.
#[derive(Clone, Debug)]
pub struct ListRecords {
    pub model_key: String,
    pub view: View,
    pub limit: i64,
    pub after: Option<String>,
    pub filter: Option<Value>,
    pub order: Vec<OrderTerm>,
}

/// One page of records.
pub struct RecordPage {
    pub items: Vec<RecordOut>,
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
    /// Counts every record the filter matches (run only when asked for).
    pub count: CountQuery,
}

/// A prepared `totalCount` query, with the connection it runs on.
pub struct CountQuery {
    sql: Sql,
    db: DatabaseConnection,
}

impl CountQuery {
    /// How many records of the view match the filter, across all pages.
    pub async fn run(&self) -> AppResult<i64> {
        let mut sql = Sql::new(self.sql.backend);
        sql.append(&self.sql);
        let row = self
            .db
            .query_one(sql.into_statement())
            .await?
            .ok_or_else(|| AppError::internal("COUNT returned no row"))?;
        Ok(row.try_get::<i64>("", "n")?)
    }
}

/// What a sort term reads.
#[derive(Clone, Debug)]
enum SortKey {
    CreatedAt,
    UpdatedAt,
    PublishedAt,
    Field(FieldDef),
}

#[derive(Clone, Debug)]
struct Sort {
    key: SortKey,
    descending: bool,
    /// The SQL expression.
    expr: String,
    /// Whether the expression can be NULL.
    nullable: bool,
}

impl Sort {
    /// This row's value of the term, as a cursor holds it (`data`: the
    /// row's data, parsed when some term orders by a field).
    fn value_of(&self, row: &records::Model, data: Option<&Value>) -> Value {
        let time = |t: &DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::Nanos, true));
        match &self.key {
            SortKey::CreatedAt => time(&row.created_at),
            SortKey::UpdatedAt => time(&row.updated_at),
            SortKey::PublishedAt => row.published_at.as_ref().map_or(Value::Null, time),
            SortKey::Field(f) => data
                .and_then(|d| d.get(&f.name))
                .cloned()
                .unwrap_or(Value::Null),
        }
    }

    /// A cursor value as a bound SQL value, checked to be of the right type.
    fn bind_value(&self, sql: &mut Sql, value: &Value) -> AppResult<()> {
        match &self.key {
            SortKey::Field(f) => {
                let v = normalize(f, value, "after").map_err(|_| bad_cursor())?;
                sql.bind(sql_value(f, &v));
            }
            _ => {
                let t = value
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .ok_or_else(bad_cursor)?;
                sql.bind(t.with_timezone(&Utc));
            }
        }
        Ok(())
    }
}

/// What a cursor holds.
#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The ordering it belongs to.
    o: String,
    /// Sort values of the last row.
    v: Vec<Value>,
    /// Id of the last row.
    id: String,
}

fn bad_cursor() -> AppError {
    AppError::bad_field(
        "after",
        "after is not a cursor of this query (cursors are only valid with the same modelKey and orderBy)",
    )
}

fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> AppResult<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad_cursor())?;
    serde_json::from_slice(&bytes).map_err(|_| bad_cursor())
}

/// The statements behind one `records` call.
struct Prepared {
    sorts: Vec<Sort>,
    fingerprint: String,
    page: Sql,
    count: Sql,
}

/// The statements of `req` over `model` (the model of `req.model_key`).
fn prepare(backend: DbBackend, model: &ContentModel, req: &ListRecords) -> AppResult<Prepared> {
    if !LIMITS.contains(&req.limit) {
        return Err(AppError::bad_field(
            "limit",
            format!(
                "limit must be between {} and {}",
                LIMITS.start(),
                LIMITS.end()
            ),
        ));
    }
    if let Some(filter) = &req.filter {
        check_where(filter)?;
    }
    let sorts = sorts(backend, model, req.view, &req.order)?;
    let fingerprint = fingerprint(model, &sorts);

    // The records the query is about: this model, in this view, matching
    // the filter. Both the page and the count start here. The model was
    // found within the caller's project and a record's project is its
    // model's, so the model id alone isolates projects, and every index
    // (leading with model_id) covers the condition.
    let mut filter = Sql::new(backend);
    let probed = match &req.filter {
        Some(conditions) => push_filter(&mut filter, model, req.view, conditions)?,
        None => false,
    };
    let mut base = Sql::new(backend);
    // With a unique probe the few matching rows come through primary keys.
    // SQLite, which has no statistics, would rather walk the model's whole
    // ordering index to skip a sort; a unary `+` keeps the model condition
    // out of its index choice (a filter still, not an access path).
    base.push(if probed && backend == DbBackend::Sqlite {
        " FROM records r WHERE +r.model_id = "
    } else {
        " FROM records r WHERE r.model_id = "
    });
    base.bind(model.row.id.clone());
    if req.view == View::Published {
        base.push(" AND r.published_at IS NOT NULL");
    }
    base.append(&filter);

    let mut count = Sql::new(backend);
    count.push("SELECT COUNT(*) AS n");
    count.append(&base);

    let mut page = Sql::new(backend);
    page.push(&sized_columns(backend, req.view));
    page.append(&base);
    if let Some(after) = &req.after {
        let cursor = decode_cursor(after)?;
        if cursor.o != fingerprint || cursor.v.len() != sorts.len() {
            return Err(bad_cursor());
        }
        push_seek(&mut page, &sorts, &cursor)?;
    }
    push_order(&mut page, &sorts);
    page.push(&format!(" LIMIT {}", req.limit + 1));
    Ok(Prepared {
        sorts,
        fingerprint,
        page,
        count,
    })
}

/// The database's plan for the page query of `req` (`EXPLAIN QUERY PLAN` on
/// SQLite, `EXPLAIN` on PostgreSQL), one line per row: for operators and
/// benchmarks checking that indexes are used.
pub async fn explain<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    req: &ListRecords,
) -> AppResult<Vec<String>> {
    let backend = db.get_database_backend();
    let model = require_model(db, project_id, &req.model_key).await?;
    let prepared = prepare(backend, &model, req)?;
    let mut sql = Sql::new(backend);
    sql.push(match backend {
        DbBackend::Postgres => "EXPLAIN ",
        _ => "EXPLAIN QUERY PLAN ",
    });
    sql.append(&prepared.page);
    let rows = db.query_all(sql.into_statement()).await?;
    rows.iter()
        .map(|row| match backend {
            DbBackend::Postgres => row.try_get::<String>("", "QUERY PLAN"),
            _ => row.try_get::<String>("", "detail"),
        })
        .collect::<Result<_, _>>()
        .map_err(AppError::from)
}

/// Lists one page of a model's records in `view`, with no answer limit
/// (for operators and benchmarks; requests use [`list_records_within`]).
pub async fn list_records(
    db: &DatabaseConnection,
    project_id: &str,
    req: ListRecords,
) -> AppResult<RecordPage> {
    let model = require_model(db, project_id, &req.model_key).await?;
    list_records_within(db, &model, req, &AnswerBudget::new(usize::MAX)).await
}

/// Lists one page of `model`'s records (the model of `req.model_key`, of
/// the caller's project) in `req.view`, charging `budget` with the size of
/// their data before loading it.
pub async fn list_records_within(
    db: &DatabaseConnection,
    model: &ContentModel,
    req: ListRecords,
    budget: &AnswerBudget,
) -> AppResult<RecordPage> {
    let Prepared {
        sorts,
        fingerprint,
        page,
        count,
    } = prepare(db.get_database_backend(), model, &req)?;
    let mut sized = SizedRow::find_by_statement(page.into_statement())
        .all(db)
        .await?;
    let has_next_page = sized.len() as i64 > req.limit;
    sized.truncate(req.limit as usize);
    let rows = load_data(db, req.view, sized, budget).await?;
    let end_cursor = match rows.last() {
        Some((row, data)) => {
            // Only a term ordering by a field reads the data.
            let parsed = if sorts.iter().any(|s| matches!(s.key, SortKey::Field(_))) {
                Some(serde_json::from_slice::<Value>(data).map_err(|e| {
                    AppError::internal(format!("record {} holds unreadable data: {e}", row.id))
                })?)
            } else {
                None
            };
            Some(encode_cursor(&Cursor {
                o: fingerprint,
                v: sorts
                    .iter()
                    .map(|s| s.value_of(row, parsed.as_ref()))
                    .collect(),
                id: row.id.clone(),
            }))
        }
        None => None,
    };
    Ok(RecordPage {
        items: rows
            .into_iter()
            .map(|(row, data)| RecordOut {
                row,
                model_key: model.row.key.clone(),
                view: req.view,
                data: RecordData::Text(data),
            })
            .collect(),
        has_next_page,
        end_cursor,
        count: CountQuery {
            sql: count,
            db: db.clone(),
        },
    })
}

/// Resolves `orderBy` (default: `createdAt` ascending).
fn sorts(
    backend: DbBackend,
    model: &ContentModel,
    view: View,
    order: &[OrderTerm],
) -> AppResult<Vec<Sort>> {
    if order.len() > MAX_ORDER_TERMS {
        return Err(AppError::bad_field(
            "orderBy",
            format!("orderBy takes at most {MAX_ORDER_TERMS} terms"),
        ));
    }
    let default = [OrderTerm {
        field: "createdAt".into(),
        descending: false,
    }];
    let order = if order.is_empty() {
        &default[..]
    } else {
        order
    };
    order
        .iter()
        .map(|term| {
            let (key, expr, nullable) = match term.field.as_str() {
                "createdAt" => (SortKey::CreatedAt, "r.created_at".to_owned(), false),
                "updatedAt" => (SortKey::UpdatedAt, "r.updated_at".to_owned(), false),
                "publishedAt" => (
                    SortKey::PublishedAt,
                    "r.published_at".to_owned(),
                    view == View::Draft,
                ),
                name => {
                    let field = model.field(name).ok_or_else(|| {
                        AppError::bad_field(
                            "orderBy",
                            format!(
                                "cannot order by \"{name}\": model \"{}\" has no such field \
                                 (nor is it createdAt, updatedAt or publishedAt)",
                                model.key()
                            ),
                        )
                    })?;
                    if !field.field_type.is_ordered() {
                        return Err(AppError::bad_field(
                            "orderBy",
                            format!(
                                "cannot order by \"{name}\": {} fields have no order",
                                field.field_type.as_str()
                            ),
                        ));
                    }
                    let expr = data_expr(backend, DataColumn::of(view), field)?;
                    (SortKey::Field(field.clone()), expr, true)
                }
            };
            Ok(Sort {
                key,
                descending: term.descending,
                expr,
                nullable,
            })
        })
        .collect()
}

/// Identifies the ordering a cursor belongs to.
fn fingerprint(model: &ContentModel, sorts: &[Sort]) -> String {
    let terms: Vec<String> = sorts
        .iter()
        .map(|s| {
            let name = match &s.key {
                SortKey::CreatedAt => "createdAt",
                SortKey::UpdatedAt => "updatedAt",
                SortKey::PublishedAt => "publishedAt",
                SortKey::Field(f) => f.name.as_str(),
            };
            format!("{name}:{}", if s.descending { "d" } else { "a" })
        })
        .collect();
    format!("{}|{}", model.key(), terms.join(","))
}

fn ties_descending(sorts: &[Sort]) -> bool {
    sorts.last().is_some_and(|s| s.descending)
}

fn push_order(sql: &mut Sql, sorts: &[Sort]) {
    let mut terms: Vec<String> = sorts
        .iter()
        .map(|s| {
            let dir = if s.descending { "DESC" } else { "ASC" };
            // Only nullable terms say where nulls go: a NULLS clause on a
            // NOT NULL column would keep PostgreSQL from using its index.
            match (s.nullable, s.descending) {
                (false, _) => format!("{} {dir}", s.expr),
                (true, false) => format!("{} ASC NULLS LAST", s.expr),
                (true, true) => format!("{} DESC NULLS FIRST", s.expr),
            }
        })
        .collect();
    terms.push(format!(
        "r.id {}",
        if ties_descending(sorts) {
            "DESC"
        } else {
            "ASC"
        }
    ));
    sql.push(" ORDER BY ");
    sql.push(&terms.join(", "));
}

/// Rows strictly after the cursor in the ordering: for terms t1…tn and id,
/// `(t1 after c1) OR (t1 = c1 AND t2 after c2) OR … OR (all equal AND id
/// after cid)`, where null is the largest value. A leading bound on the
/// first term (when it is never null) lets the database seek its index.
fn push_seek(sql: &mut Sql, sorts: &[Sort], cursor: &Cursor) -> AppResult<()> {
    if let (Some(first), Some(value)) = (sorts.first(), cursor.v.first()) {
        if !first.nullable && !value.is_null() {
            sql.push(&format!(
                " AND {} {} ",
                first.expr,
                if first.descending { "<=" } else { ">=" }
            ));
            first.bind_value(sql, value)?;
        }
    }
    sql.push(" AND (");
    let mut disjuncts = 0;
    for k in 0..=sorts.len() {
        let mut conj = Sql::new(sql.backend);
        let mut parts = 0;
        // Terms before k equal the cursor's values.
        for (s, v) in sorts.iter().zip(&cursor.v).take(k) {
            if parts > 0 {
                conj.push(" AND ");
            }
            if v.is_null() {
                conj.push(&format!("{} IS NULL", s.expr));
            } else {
                conj.push(&format!("{} = ", s.expr));
                s.bind_value(&mut conj, v)?;
            }
            parts += 1;
        }
        if parts > 0 {
            conj.push(" AND ");
        }
        // Term k comes after the cursor's value.
        match (sorts.get(k), cursor.v.get(k)) {
            (Some(s), Some(v)) => match (s.descending, v.is_null()) {
                // Nothing is after null ascending but other nulls (by id).
                (false, true) => continue,
                (false, false) if s.nullable => {
                    conj.push(&format!("({} > ", s.expr));
                    s.bind_value(&mut conj, v)?;
                    conj.push(&format!(" OR {} IS NULL)", s.expr));
                }
                (false, false) => {
                    conj.push(&format!("{} > ", s.expr));
                    s.bind_value(&mut conj, v)?;
                }
                (true, true) => conj.push(&format!("{} IS NOT NULL", s.expr)),
                (true, false) => {
                    conj.push(&format!("{} < ", s.expr));
                    s.bind_value(&mut conj, v)?;
                }
            },
            _ => {
                let op = if ties_descending(sorts) { "<" } else { ">" };
                conj.push(&format!("r.id {op} "));
                conj.bind(cursor.id.clone());
            }
        }
        if disjuncts > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        sql.append(&conj);
        sql.push(")");
        disjuncts += 1;
    }
    sql.push(")");
    Ok(())
}

/// One record of the project as `view` shows it, charging `budget` with
/// its data before loading it; `None` when it does not exist, belongs to
/// another project, or (published view) is not published.
pub async fn read_record<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    id: &str,
    view: View,
    budget: &AnswerBudget,
) -> AppResult<Option<RecordOut>> {
    let backend = db.get_database_backend();
    // The model's key comes with the row: one statement in all.
    let mut sql = Sql::new(backend);
    sql.push(&sized_columns(backend, view));
    sql.push(
        ", m.key AS model_key FROM records r JOIN models m ON m.id = r.model_id WHERE r.id = ",
    );
    sql.bind(id.to_owned());
    sql.push(" AND r.project_id = ");
    sql.bind(project_id.to_owned());
    if view == View::Published {
        sql.push(" AND r.published_at IS NOT NULL");
    }
    let Some(found) = db.query_one(sql.into_statement()).await? else {
        return Ok(None);
    };
    let model_key = found.try_get::<String>("", "model_key")?;
    let sized = SizedRow::from_query_result(&found, "")?;
    let Some((row, data)) = load_data(db, view, vec![sized], budget).await?.pop() else {
        return Ok(None);
    };
    Ok(Some(RecordOut {
        row,
        model_key,
        view,
        data: RecordData::Text(data),
    }))
}

/// A record row as the page query reads it: the view's data only when it
/// is at most [`INLINE_DATA_BYTES`], and its size always.
#[derive(FromQueryResult)]
struct SizedRow {
    id: String,
    project_id: String,
    model_id: String,
    status: RecordStatus,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
    data_len: i64,
    /// The data as JSON text.
    data: Option<String>,
}

/// The view's data column as JSON text.
fn data_text(backend: DbBackend, view: View) -> String {
    let col = DataColumn::of(view).sql();
    match backend {
        DbBackend::Postgres => format!("{col}::text"),
        _ => col.to_owned(),
    }
}

/// The columns of a [`SizedRow`] in `view` (the other view's data is not
/// read at all).
fn sized_columns(backend: DbBackend, view: View) -> String {
    let text = data_text(backend, view);
    let len = match backend {
        DbBackend::Postgres => format!("COALESCE(octet_length({text}), 0)::bigint"),
        _ => format!("COALESCE(octet_length({text}), 0)"),
    };
    format!(
        "SELECT r.id, r.project_id, r.model_id, r.status, r.version, r.created_at, \
         r.updated_at, r.published_at, {len} AS data_len, \
         CASE WHEN {len} <= {INLINE_DATA_BYTES} THEN {text} END AS data"
    )
}

/// Checks that `text` (record `id`'s data as the database returned it) is
/// one JSON value, and takes it as bytes for the answer. quire wrote it
/// from a parsed value, so this never fails on a database only quire
/// writes; the check (a scan, no tree) keeps a damaged row from breaking an
/// answer.
pub fn checked_text(id: &str, text: String) -> AppResult<bytes::Bytes> {
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| AppError::internal(format!("record {id} holds data that is not JSON: {e}")))?;
    Ok(bytes::Bytes::from(text))
}

/// Charges `budget` with the data of `rows`, then loads the data that did
/// not come inline, one record at a time (so no more than one large
/// record is in flight beyond the answer). A record deleted (or, in the
/// published view, unpublished) between the two reads is left out. The
/// rows come back without data in their data columns: it is beside them,
/// as checked JSON text.
async fn load_data<C: ConnectionTrait>(
    db: &C,
    view: View,
    rows: Vec<SizedRow>,
    budget: &AnswerBudget,
) -> AppResult<Vec<(records::Model, bytes::Bytes)>> {
    let total = rows
        .iter()
        .map(|r| usize::try_from(r.data_len).unwrap_or(0))
        .fold(0usize, usize::saturating_add);
    budget.charge(total).await?;
    let backend = db.get_database_backend();
    let text = data_text(backend, view);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let large = usize::try_from(row.data_len).unwrap_or(0) > INLINE_DATA_BYTES;
        let data = match row.data {
            Some(data) => checked_text(&row.id, data)?,
            None if large => {
                let mut sql = Sql::new(backend);
                sql.push(&format!(
                    "SELECT {text} AS data FROM records r WHERE r.id = "
                ));
                sql.bind(row.id.clone());
                sql.push(" AND r.project_id = ");
                sql.bind(row.project_id.clone());
                // Unpublished since the first read: not in the published view.
                if view == View::Published {
                    sql.push(" AND r.published_at IS NOT NULL");
                }
                let Some(found) = db.query_one(sql.into_statement()).await? else {
                    continue;
                };
                match found.try_get::<Option<String>>("", "data")? {
                    Some(data) => checked_text(&row.id, data)?,
                    None => continue,
                }
            }
            None => bytes::Bytes::from_static(b"null"),
        };
        let row = records::Model {
            id: row.id,
            project_id: row.project_id,
            model_id: row.model_id,
            draft_data: Value::Null,
            published_data: None,
            status: row.status,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            published_at: row.published_at,
        };
        out.push((row, data));
    }
    Ok(out)
}

/// Checks the bounds of a `where` before any work: its size as JSON text,
/// its number of conditions, the length of each `in`.
pub fn check_where(filter: &Value) -> AppResult<()> {
    check_where_size(filter)?;
    let Value::Object(conditions) = filter else {
        return Ok(());
    };
    let mut count = 0usize;
    for (name, condition) in conditions {
        match condition {
            Value::Object(ops) => {
                count += ops.len();
                if let Some(Value::Array(values)) = ops.get("in") {
                    if values.len() > MAX_IN_VALUES {
                        return Err(AppError::bad_field(
                            "where",
                            format!(
                                "where.{name}: in takes at most {MAX_IN_VALUES} values, not {}",
                                values.len()
                            ),
                        ));
                    }
                }
            }
            _ => count += 1,
        }
    }
    if count > MAX_WHERE_CONDITIONS {
        return Err(AppError::bad_field(
            "where",
            format!("where holds {count} conditions; at most {MAX_WHERE_CONDITIONS} are allowed"),
        ));
    }
    Ok(())
}

/// Checks that `value`, a `where` or a part of one, is at most
/// [`MAX_WHERE_BYTES`] as compact JSON text; stops counting at the limit.
pub fn check_where_size(value: &Value) -> AppResult<()> {
    if json_len_at_most(value, MAX_WHERE_BYTES) {
        Ok(())
    } else {
        Err(AppError::bad_field(
            "where",
            format!(
                "where is larger than {MAX_WHERE_BYTES} bytes of JSON; at most that is allowed"
            ),
        ))
    }
}

/// Whether `value` serializes to at most `max` bytes of compact JSON. The
/// serializer stops at the first byte past `max`, so a huge value costs no
/// more than `max` bytes of work and none of memory.
pub fn json_len_at_most(value: &Value, max: usize) -> bool {
    struct Counter {
        left: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.left = self
                .left
                .checked_sub(buf.len())
                .ok_or_else(|| std::io::Error::other("over the limit"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { left: max }, value).is_ok()
}

/// Appends `AND …` for each condition of a `where` object; returns whether
/// one of them probes a unique field's side table.
fn push_filter(sql: &mut Sql, model: &ContentModel, view: View, filter: &Value) -> AppResult<bool> {
    let Value::Object(conditions) = filter else {
        return Err(AppError::bad_field(
            "where",
            "where must be an object mapping field names to values or operators",
        ));
    };
    let mut probed = false;
    for (name, condition) in conditions {
        let field = model.field(name).ok_or_else(|| {
            AppError::bad_field(
                "where",
                format!(
                    "unknown field \"{name}\" in where: model \"{}\" has no such field",
                    model.key()
                ),
            )
        })?;
        let expr = data_expr(sql.backend, DataColumn::of(view), field)?;
        match condition {
            Value::Object(ops) => {
                for (op, operand) in ops {
                    probed |= push_condition(sql, model, field, &expr, op, operand)?;
                }
            }
            other => probed |= push_condition(sql, model, field, &expr, "eq", other)?,
        }
    }
    Ok(probed)
}

fn push_condition(
    sql: &mut Sql,
    model: &ContentModel,
    field: &FieldDef,
    expr: &str,
    op: &str,
    operand: &Value,
) -> AppResult<bool> {
    let name = &field.name;
    let type_name = field.field_type.as_str();
    let refuse = |why: String| Err(AppError::bad_field("where", format!("where.{name}: {why}")));
    let mut probed = false;
    let value = |v: &Value| -> AppResult<sea_orm::Value> {
        let v = normalize(field, v, "where")?;
        Ok(sql_value(field, &v))
    };
    match (op, operand) {
        ("eq", Value::Null) => sql.push(&format!(" AND {expr} IS NULL")),
        ("ne", Value::Null) => sql.push(&format!(" AND {expr} IS NOT NULL")),
        ("eq" | "ne" | "in", _) if !field.field_type.is_comparable() => {
            return refuse(format!(
                "a {type_name} field can only be compared with null"
            ))
        }
        ("eq", v) => {
            let bound = value(v)?;
            probed = push_unique_probe(sql, model, field, std::slice::from_ref(v))?;
            sql.push(&format!(" AND {expr} = "));
            sql.bind(bound);
        }
        ("ne", v) => {
            let bound = value(v)?;
            sql.push(&format!(" AND {expr} <> "));
            sql.bind(bound);
        }
        ("gt" | "gte" | "lt" | "lte", Value::Null) => {
            return refuse(format!("{op} needs a value, not null"))
        }
        ("gt" | "gte" | "lt" | "lte", v) => {
            if !field.field_type.is_ordered() {
                return refuse(format!("{op} does not apply to a {type_name} field"));
            }
            let bound = value(v)?;
            let sym = match op {
                "gt" => ">",
                "gte" => ">=",
                "lt" => "<",
                _ => "<=",
            };
            sql.push(&format!(" AND {expr} {sym} "));
            sql.bind(bound);
        }
        ("in", Value::Array(items)) => {
            let (nulls, values): (Vec<&Value>, Vec<&Value>) =
                items.iter().partition(|v| v.is_null());
            let bound = values
                .iter()
                .map(|v| value(v))
                .collect::<AppResult<Vec<_>>>()?;
            if nulls.is_empty() {
                let owned: Vec<Value> = values.iter().map(|v| (*v).clone()).collect();
                probed = push_unique_probe(sql, model, field, &owned)?;
            }
            sql.push(" AND (");
            if bound.is_empty() {
                sql.push("1 = 0");
            } else {
                sql.push(&format!("{expr} IN ("));
                for (i, b) in bound.into_iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(b);
                }
                sql.push(")");
            }
            if !nulls.is_empty() {
                sql.push(&format!(" OR {expr} IS NULL"));
            }
            sql.push(")");
        }
        ("in", _) => return refuse("in needs an array".into()),
        ("contains", Value::String(s)) => {
            if !field.field_type.is_textual() {
                return refuse(format!(
                    "contains applies to STRING and TEXT fields, not {type_name}"
                ));
            }
            let function = match sql.backend {
                DbBackend::Postgres => "strpos",
                _ => "instr",
            };
            sql.push(&format!(" AND {function}({expr}, "));
            sql.bind(s.clone());
            sql.push(") > 0");
        }
        ("contains", _) => {
            if !field.field_type.is_textual() {
                return refuse(format!(
                    "contains applies to STRING and TEXT fields, not {type_name}"
                ));
            }
            return refuse("contains needs a string".into());
        }
        (other, _) => {
            return refuse(format!(
                "unknown operator \"{other}\" (use eq, ne, gt, gte, lt, lte, in, contains)"
            ))
        }
    }
    Ok(probed)
}

/// For a unique field, narrows the rows to those holding one of `values`
/// through the unique side table's primary key: an index probe per value
/// instead of a scan. The JSON condition still decides (the side table
/// holds draft and published values alike). Returns whether it probed.
fn push_unique_probe(
    sql: &mut Sql,
    model: &ContentModel,
    field: &FieldDef,
    values: &[Value],
) -> AppResult<bool> {
    if !field.unique || values.is_empty() {
        return Ok(false);
    }
    let mut texts = Vec::with_capacity(values.len());
    for v in values {
        let v = normalize(field, v, "where")?;
        if let Some(text) = unique_text(field.field_type, &v) {
            texts.push(text);
        }
    }
    sql.push(" AND r.id IN (SELECT u.record_id FROM record_unique_values u WHERE u.model_id = ");
    sql.bind(model.row.id.clone());
    sql.push(" AND u.field = ");
    sql.bind(field.name.clone());
    sql.push(" AND u.value_text IN (");
    for (i, text) in texts.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(text);
    }
    sql.push("))");
    Ok(true)
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failing line"
)]
mod tests {
    use entity::models;
    use serde_json::json;

    use super::*;
    use crate::content::fields::FieldType;

    fn model() -> ContentModel {
        let field = |name: &str, field_type, unique| FieldDef {
            name: name.into(),
            field_type,
            required: false,
            unique,
            reference_model_key: None,
        };
        ContentModel {
            row: models::Model {
                id: "m1".into(),
                project_id: "p1".into(),
                key: "page".into(),
                name: "Page".into(),
                fields: json!([]),
                created_at: Utc::now(),
                updated_at: Utc::now(),
            },
            fields: vec![
                field("slug", FieldType::String, true),
                field("rank", FieldType::Integer, false),
                field("body", FieldType::Text, false),
                field("meta", FieldType::Json, false),
            ],
        }
    }

    fn filter(backend: DbBackend, value: Value) -> AppResult<(String, bool)> {
        let mut sql = Sql::new(backend);
        let probed = push_filter(&mut sql, &model(), View::Published, &value)?;
        Ok((sql.into_statement().sql, probed))
    }

    fn order(terms: &[(&str, bool)]) -> Vec<OrderTerm> {
        terms
            .iter()
            .map(|(field, descending)| OrderTerm {
                field: (*field).into(),
                descending: *descending,
            })
            .collect()
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor {
            o: "page|createdAt:a".into(),
            v: vec![json!("2026-01-01T00:00:00Z")],
            id: "r1".into(),
        };
        let back = decode_cursor(&encode_cursor(&cursor)).map(|c| (c.o, c.v, c.id));
        assert_eq!(
            back.ok(),
            Some((cursor.o.clone(), cursor.v.clone(), cursor.id.clone()))
        );
        for garbage in ["", "not base64!", "bm90IGpzb24"] {
            assert!(decode_cursor(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn filters_bind_values_and_probe_unique_fields() {
        let (sql, probed) = filter(DbBackend::Sqlite, json!({ "slug": "home" })).unwrap();
        assert!(probed);
        assert!(sql.contains("record_unique_values"), "{sql}");
        assert!(
            !sql.contains("home"),
            "values are bound, never written: {sql}"
        );

        let (sql, probed) = filter(
            DbBackend::Postgres,
            json!({ "rank": { "gte": 2, "lt": 9 }, "body": { "contains": "x" } }),
        )
        .unwrap();
        assert!(!probed);
        // Object keys are visited in order (body, then rank).
        assert!(sql.contains(">= $2") && sql.contains("< $3"), "{sql}");
        assert!(sql.contains("strpos"), "{sql}");

        let (sql, _) = filter(DbBackend::Sqlite, json!({ "rank": null })).unwrap();
        assert!(sql.ends_with("IS NULL"), "{sql}");
    }

    #[test]
    fn bad_filters_name_the_problem() {
        for (value, needle) in [
            (json!(["slug"]), "must be an object"),
            (json!({ "nope": 1 }), "unknown field \"nope\""),
            (json!({ "rank": { "gt": null } }), "needs a value"),
            (json!({ "rank": { "contains": "1" } }), "contains applies"),
            (json!({ "meta": { "eq": 1 } }), "only be compared with null"),
            (json!({ "slug": { "in": "home" } }), "in needs an array"),
            (json!({ "slug": { "like": "h%" } }), "unknown operator"),
            (json!({ "rank": "seven" }), "rank"),
        ] {
            let err = filter(DbBackend::Sqlite, value.clone()).err();
            let message = err.map(|e| e.message()).unwrap_or_default();
            assert!(message.contains(needle), "{value}: {message}");
        }
    }

    #[test]
    fn orderings_check_their_terms_and_fingerprint_the_cursor() {
        let m = model();
        let sorts_of = |terms| sorts(DbBackend::Sqlite, &m, View::Published, &order(terms));
        let default = sorts_of(&[]).unwrap();
        assert_eq!(fingerprint(&m, &default), "page|createdAt:a");
        let by_rank = sorts_of(&[("rank", true), ("updatedAt", false)]).unwrap();
        assert_eq!(fingerprint(&m, &by_rank), "page|rank:d,updatedAt:a");
        assert!(by_rank[0].nullable && !by_rank[1].nullable);
        assert!(sorts_of(&[("meta", false)]).is_err(), "JSON has no order");
        assert!(sorts_of(&[("nope", false)]).is_err());
        let six = [("rank", false); 6];
        assert!(sorts_of(&six).is_err(), "at most five terms");

        let mut sql = Sql::new(DbBackend::Sqlite);
        push_order(&mut sql, &by_rank);
        assert_eq!(
            sql.into_statement().sql,
            " ORDER BY json_extract(r.published_data, '$.rank') DESC NULLS FIRST, r.updated_at ASC, r.id ASC"
        );
    }
}
