//! Content fields: models and records. The rules live in `crate::content`.

use std::sync::Arc;

use async_graphql::parser::types::Field as FieldNode;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Enum, InputObject, Json, Object, OutputType, Positioned,
    ServerResult, Value as GqlValue, ID,
};
use serde_json::Value;

use super::types::{PageInfo, Stamp};
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::content::budget::AnswerBudget;
use crate::content::fields::{FieldDef, FieldType};
use crate::content::models::{ModelChange, NewModel};
use crate::content::query::{self, CountQuery, OrderTerm};
use crate::content::records::{RecordData, RecordOut};
use crate::content::service::RecordsQuery;
use crate::content::{ContentModel, RecordStatus};

#[derive(Default)]
pub struct ContentQuery;

#[derive(Default)]
pub struct ContentMutation;

/// The type of a model field.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "FieldType")]
pub enum GqlFieldType {
    String,
    Text,
    Integer,
    Number,
    Boolean,
    Datetime,
    Json,
    Reference,
    File,
}

impl From<GqlFieldType> for FieldType {
    fn from(t: GqlFieldType) -> Self {
        match t {
            GqlFieldType::String => FieldType::String,
            GqlFieldType::Text => FieldType::Text,
            GqlFieldType::Integer => FieldType::Integer,
            GqlFieldType::Number => FieldType::Number,
            GqlFieldType::Boolean => FieldType::Boolean,
            GqlFieldType::Datetime => FieldType::Datetime,
            GqlFieldType::Json => FieldType::Json,
            GqlFieldType::Reference => FieldType::Reference,
            GqlFieldType::File => FieldType::File,
        }
    }
}

impl From<FieldType> for GqlFieldType {
    fn from(t: FieldType) -> Self {
        match t {
            FieldType::String => GqlFieldType::String,
            FieldType::Text => GqlFieldType::Text,
            FieldType::Integer => GqlFieldType::Integer,
            FieldType::Number => GqlFieldType::Number,
            FieldType::Boolean => GqlFieldType::Boolean,
            FieldType::Datetime => GqlFieldType::Datetime,
            FieldType::Json => GqlFieldType::Json,
            FieldType::Reference => GqlFieldType::Reference,
            FieldType::File => GqlFieldType::File,
        }
    }
}

/// Where a record stands: `CHANGED` is published, with newer draft edits.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "RecordStatus")]
pub enum GqlRecordStatus {
    Draft,
    Published,
    Changed,
}

/// `ASC` or `DESC`.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

/// One ordering term: `createdAt`, `updatedAt`, `publishedAt` or a field
/// name. Ties are broken by id.
#[derive(InputObject)]
pub struct RecordOrder {
    pub field: String,
    #[graphql(default)]
    pub direction: SortDirection,
}

/// One field of a new or changed model.
#[derive(InputObject)]
pub struct FieldInput {
    /// `[a-z][a-zA-Z0-9_]*`, at most 64 characters.
    pub name: String,
    #[graphql(name = "type")]
    pub field_type: GqlFieldType,
    #[graphql(default = false)]
    pub required: bool,
    /// Enforced by the database; STRING, INTEGER, NUMBER, DATETIME and
    /// REFERENCE fields can be unique.
    #[graphql(default = false)]
    pub unique: bool,
    /// The model a REFERENCE field points to (required for that type).
    pub reference_model_key: Option<String>,
}

impl From<FieldInput> for FieldDef {
    fn from(f: FieldInput) -> Self {
        FieldDef {
            name: f.name,
            field_type: f.field_type.into(),
            required: f.required,
            unique: f.unique,
            reference_model_key: f.reference_model_key,
        }
    }
}

/// What a new model should be.
#[derive(InputObject)]
pub struct ModelInput {
    /// Stable identifier: `[a-z][a-zA-Z0-9_]*`, at most 64 characters.
    pub key: String,
    pub name: String,
    pub fields: Vec<FieldInput>,
}

/// A change to a model; omitted parts stay as they are.
#[derive(InputObject)]
pub struct UpdateModelInput {
    pub name: Option<String>,
    /// The complete new field list: every current field (same name, type and
    /// referenceModelKey; `required` and `unique` may change) plus new ones.
    pub fields: Option<Vec<FieldInput>>,
}

/// A content model.
pub struct Model(ContentModel);

#[Object]
impl Model {
    async fn key(&self) -> &str {
        &self.0.row.key
    }
    async fn name(&self) -> &str {
        &self.0.row.name
    }
    async fn fields(&self) -> Vec<Field> {
        self.0.fields.iter().cloned().map(Field).collect()
    }
    async fn created_at(&self) -> Stamp {
        self.0.row.created_at.into()
    }
    async fn updated_at(&self) -> Stamp {
        self.0.row.updated_at.into()
    }
}

/// One field of a model.
pub struct Field(FieldDef);

#[Object]
impl Field {
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "type")]
    async fn field_type(&self) -> GqlFieldType {
        self.0.field_type.into()
    }
    async fn required(&self) -> bool {
        self.0.required
    }
    async fn unique(&self) -> bool {
        self.0.unique
    }
    async fn reference_model_key(&self) -> Option<&str> {
        self.0.reference_model_key.as_deref()
    }
}

/// A record, as the view it was read in shows it. Its data is held apart:
/// the last `data` selection takes it (see [`LastUse`]), so the answer is
/// built from it without a copy.
pub struct Record {
    out: RecordOut,
    data: LastUse<RecordData>,
}

impl Record {
    /// `out`, whose data `data_uses` selections of `data` will read.
    fn new(mut out: RecordOut, data_uses: usize) -> Self {
        let data = std::mem::replace(&mut out.data, RecordData::Tree(Value::Null));
        Self {
            out,
            data: LastUse::new(data, data_uses),
        }
    }
}

impl From<RecordOut> for Record {
    /// A record whose data every reader copies (a mutation's answer).
    fn from(record: RecordOut) -> Self {
        Record::new(record, usize::MAX)
    }
}

#[Object]
impl Record {
    async fn id(&self) -> ID {
        ID(self.out.row.id.clone())
    }
    async fn model_key(&self) -> &str {
        &self.out.model_key
    }
    /// The draft data in the draft view, the published data otherwise.
    async fn data(&self) -> OwnedJson {
        OwnedJson::new(self.data.get().unwrap_or(RecordData::Tree(Value::Null)))
    }
    async fn status(&self) -> GqlRecordStatus {
        match self.out.status() {
            RecordStatus::Draft => GqlRecordStatus::Draft,
            RecordStatus::Published => GqlRecordStatus::Published,
            RecordStatus::Changed => GqlRecordStatus::Changed,
        }
    }
    /// Bumped by every change.
    async fn version(&self) -> i64 {
        self.out.row.version
    }
    async fn created_at(&self) -> Stamp {
        self.out.row.created_at.into()
    }
    async fn updated_at(&self) -> Stamp {
        self.out.row.updated_at.into()
    }
    /// When the record was last published; `null` while it is not.
    async fn published_at(&self) -> Option<Stamp> {
        self.out.row.published_at.map(Stamp)
    }
}

/// One page of records.
pub struct RecordPage {
    items: LastUse<Vec<RecordOut>>,
    page_info: PageInfo,
    count: CountQuery,
}

#[Object]
impl RecordPage {
    async fn items(&self, ctx: &Context<'_>) -> Vec<Record> {
        let data_uses = selections(ctx, "data");
        let items = self.items.get().unwrap_or_default();
        items
            .into_iter()
            .map(|out| Record::new(out, data_uses))
            .collect()
    }
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// How many records match, over all pages (counted only when asked for).
    async fn total_count(&self) -> async_graphql::Result<i64> {
        Ok(self.count.run().await?)
    }
}

#[Object]
impl ContentQuery {
    /// One page of a model's records. The published view unless `preview`
    /// (secret TEST keys holding `drafts:read` only).
    #[graphql(guard = "RequireScope(Scope::RecordsRead)")]
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per GraphQL argument of SPEC §5"
    )]
    async fn records(
        &self,
        ctx: &Context<'_>,
        model_key: String,
        #[graphql(default_with = "Some(query::DEFAULT_LIMIT)")] limit: Option<i64>,
        after: Option<String>,
        #[graphql(default_with = "Some(false)")] preview: Option<bool>,
        #[graphql(name = "where")] filter: Option<Json<Value>>,
        order_by: Option<Vec<RecordOrder>>,
    ) -> async_graphql::Result<RecordPage> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let req = RecordsQuery {
            model_key,
            preview: preview.unwrap_or(false),
            limit: limit.unwrap_or(query::DEFAULT_LIMIT),
            after,
            filter: filter.map(|Json(v)| v),
            order: order_by
                .unwrap_or_default()
                .into_iter()
                .map(|o| OrderTerm {
                    field: o.field,
                    descending: o.direction == SortDirection::Desc,
                })
                .collect(),
        };
        let page = app.content.records(p, req, &budget(ctx)).await?;
        Ok(RecordPage {
            items: LastUse::new(page.items, selections(ctx, "items")),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: page.end_cursor,
            },
            count: page.count,
        })
    }

    /// One record; `null` when it does not exist or the view does not show it.
    #[graphql(guard = "RequireScope(Scope::RecordsRead)")]
    async fn record(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "Some(false)")] preview: Option<bool>,
    ) -> async_graphql::Result<Option<Record>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let record = app
            .content
            .record(p, &id, preview.unwrap_or(false), &budget(ctx))
            .await?;
        Ok(record.map(|out| Record::new(out, selections(ctx, "data"))))
    }

    /// The project's models.
    #[graphql(guard = "RequireScope(Scope::SchemasRead)")]
    async fn models(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Model>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let list = app.content.models(p).await?;
        Ok(list.into_iter().map(Model).collect())
    }

    /// One model by key; `null` when the project has none of that key.
    #[graphql(guard = "RequireScope(Scope::SchemasRead)")]
    async fn model(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<Option<Model>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let model = app.content.model(p, &key).await?;
        Ok(model.map(Model))
    }
}

#[Object]
impl ContentMutation {
    /// Creates a model; a key that exists already is `CONFLICT`.
    #[graphql(guard = "RequireScope(Scope::SchemasWrite)")]
    async fn create_model(
        &self,
        ctx: &Context<'_>,
        input: ModelInput,
    ) -> async_graphql::Result<Model> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let new = NewModel {
            key: input.key,
            name: input.name,
            fields: input.fields.into_iter().map(FieldDef::from).collect(),
        };
        Ok(Model(app.content.create_model(p, new).await?))
    }

    /// Renames a model or changes its fields: adds fields, loosens or (when
    /// the data allows) tightens `required` and `unique`.
    #[graphql(guard = "RequireScope(Scope::SchemasWrite)")]
    async fn update_model(
        &self,
        ctx: &Context<'_>,
        key: String,
        input: UpdateModelInput,
    ) -> async_graphql::Result<Model> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let change = ModelChange {
            name: input.name,
            fields: input
                .fields
                .map(|fields| fields.into_iter().map(FieldDef::from).collect()),
        };
        Ok(Model(app.content.update_model(p, &key, change).await?))
    }

    /// Deletes a model that has no records and that no model references.
    #[graphql(guard = "RequireScope(Scope::SchemasWrite)")]
    async fn delete_model(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<bool> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        app.content.delete_model(p, &key).await?;
        Ok(true)
    }

    /// Creates a draft record, validated against the model.
    #[graphql(guard = "RequireScope(Scope::RecordsWrite)")]
    async fn create_record(
        &self,
        ctx: &Context<'_>,
        model_key: String,
        data: Json<Value>,
    ) -> async_graphql::Result<Record> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(app
            .content
            .create_record(p, &model_key, data.0)
            .await?
            .into())
    }

    /// Replaces a record's draft data whole; `expectedVersion` that does not
    /// match is `CONFLICT`.
    #[graphql(guard = "RequireScope(Scope::RecordsWrite)")]
    async fn update_record(
        &self,
        ctx: &Context<'_>,
        id: ID,
        data: Json<Value>,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Record> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let record = app
            .content
            .update_record(p, &id, data.0, expected_version)
            .await?;
        Ok(record.into())
    }

    /// Publishes the record's draft.
    #[graphql(guard = "RequireScope(Scope::RecordsPublish)")]
    async fn publish_record(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Record> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(app.content.publish_record(p, &id).await?.into())
    }

    /// Takes the record out of the published view; its draft stays.
    #[graphql(guard = "RequireScope(Scope::RecordsPublish)")]
    async fn unpublish_record(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Record> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(app.content.unpublish_record(p, &id).await?.into())
    }

    /// Deletes the record from every view.
    #[graphql(guard = "RequireScope(Scope::RecordsDelete)")]
    async fn delete_record(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        app.content.delete_record(p, &id).await?;
        Ok(true)
    }
}

/// The request's answer budget (set by the HTTP layer); a request that
/// carries none (a schema run directly) is bounded only by the gate for
/// large answers.
fn budget(ctx: &Context<'_>) -> Arc<AnswerBudget> {
    ctx.data_opt::<Arc<AnswerBudget>>()
        .cloned()
        .unwrap_or_else(|| Arc::new(AnswerBudget::new(usize::MAX)))
}

/// How many times the current field's selection set selects `name`
/// (through fragments; `@skip`/`@include` are not read, so this may
/// count more, never fewer, than will run).
fn selections(ctx: &Context<'_>, name: &str) -> usize {
    ctx.field()
        .selection_set()
        .filter(|f| f.name() == name)
        .count()
}

/// A value read by `uses` selections: every reader but the last gets a
/// copy, the last takes it. A count too high only costs copies; a reader
/// past the count gets `None`.
struct LastUse<T> {
    left: std::sync::atomic::AtomicUsize,
    value: std::sync::Mutex<Option<T>>,
}

impl<T: Clone> LastUse<T> {
    fn new(value: T, uses: usize) -> Self {
        Self {
            left: std::sync::atomic::AtomicUsize::new(uses),
            value: std::sync::Mutex::new(Some(value)),
        }
    }

    fn get(&self) -> Option<T> {
        use std::sync::atomic::Ordering;
        let before = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        if before <= 1 {
            value.take()
        } else {
            value.clone()
        }
    }
}

/// A JSON output that hands its value to the answer instead of copying it:
/// a tree's strings move into async-graphql's value tree, and JSON text
/// read from the database goes in whole as a [`GqlValue::Binary`], which
/// quire's answer writer copies into the answer as it is
/// (`http::graphql::respond`; nothing else in quire's answers is binary).
pub struct OwnedJson(std::sync::Mutex<Option<RecordData>>);

impl OwnedJson {
    fn new(value: RecordData) -> Self {
        Self(std::sync::Mutex::new(Some(value)))
    }
}

impl OutputType for OwnedJson {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <Json<Value> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Json<Value> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<FieldNode>,
    ) -> ServerResult<GqlValue> {
        let value = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(match value {
            Some(RecordData::Text(text)) => GqlValue::Binary(text),
            Some(RecordData::Tree(value)) => GqlValue::from_json(value).unwrap_or_default(),
            None => GqlValue::Null,
        })
    }
}
