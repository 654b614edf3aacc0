//! The GraphQL operations tests repeat, as documents (for the calls whose
//! error a test asserts) and as typed methods (for the calls that must
//! succeed), answering with the schema's own types: [`CreatedApiKey`],
//! [`ApiKey`], [`Model`], [`Record`].

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::app::TestApp;

/// `createApiKey`, variables `{ i: CreateApiKeyInput }`.
pub const CREATE_API_KEY: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id name type mode scopes maskedKey rateLimitPerHour status revokedAt } } }";
/// `rotateApiKey`, variables `{ id, g: gracePeriodSeconds }`.
pub const ROTATE_API_KEY: &str = "mutation($id: ID!, $g: Int) { rotateApiKey(id: $id, gracePeriodSeconds: $g) { key apiKey { id name type mode scopes maskedKey rateLimitPerHour status revokedAt } } }";
/// `revokeApiKey`, variables `{ id }`.
pub const REVOKE_API_KEY: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { id name type mode scopes maskedKey rateLimitPerHour status revokedAt } }";
/// `updateApiKey`, variables `{ id, i: UpdateApiKeyInput }`.
pub const UPDATE_API_KEY: &str = "mutation($id: ID!, $i: UpdateApiKeyInput!) { updateApiKey(id: $id, input: $i) { id name type mode scopes maskedKey rateLimitPerHour status revokedAt } }";

/// `createModel`, variables `{ i: ModelInput }`.
pub const CREATE_MODEL: &str = "mutation($i: ModelInput!) { createModel(input: $i) { key name fields { name type required unique referenceModelKey } } }";
/// `updateModel`, variables `{ k: key, i: UpdateModelInput }`.
pub const UPDATE_MODEL: &str = "mutation($k: String!, $i: UpdateModelInput!) { updateModel(key: $k, input: $i) { key name fields { name type required unique referenceModelKey } } }";
/// `createRecord`, variables `{ m: modelKey, d: data }`.
pub const CREATE_RECORD: &str = "mutation($m: String!, $d: JSON!) { createRecord(modelKey: $m, data: $d) { id modelKey data status version publishedAt } }";
/// `updateRecord`, variables `{ id, d: data, v: expectedVersion }`.
pub const UPDATE_RECORD: &str = "mutation($id: ID!, $d: JSON!, $v: Int) { updateRecord(id: $id, data: $d, expectedVersion: $v) { id modelKey data status version publishedAt } }";
/// `publishRecord`, variables `{ id }`.
pub const PUBLISH_RECORD: &str =
    "mutation($id: ID!) { publishRecord(id: $id) { id modelKey data status version publishedAt } }";
/// `unpublishRecord`, variables `{ id }`.
pub const UNPUBLISH_RECORD: &str = "mutation($id: ID!) { unpublishRecord(id: $id) { id modelKey data status version publishedAt } }";
/// `deleteRecord`, variables `{ id }`.
pub const DELETE_RECORD: &str = "mutation($id: ID!) { deleteRecord(id: $id) }";

/// `ApiKey` (never a secret).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub mode: String,
    pub scopes: Vec<String>,
    pub masked_key: String,
    pub rate_limit_per_hour: i64,
    pub status: String,
    pub revoked_at: Option<String>,
}

/// `CreatedApiKey`: the plaintext, shown once, and the key.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    pub key: String,
    pub api_key: ApiKey,
}

/// `Model`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub key: String,
    pub name: String,
    pub fields: Vec<Field>,
}

/// `Field` of a model.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    pub required: bool,
    pub unique: bool,
    pub reference_model_key: Option<String>,
}

/// `Record`, in the view the call asked for.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub model_key: String,
    pub data: Value,
    pub status: String,
    pub version: i64,
    pub published_at: Option<String>,
}

impl TestApp {
    /// `data.<field>` of a successful operation, typed; panics on errors.
    pub async fn op<T: DeserializeOwned>(
        &self,
        key: &str,
        document: &str,
        variables: Value,
        field: &str,
    ) -> T {
        let data = self.data(key, document, variables).await;
        serde_json::from_value(data[field].clone())
            .unwrap_or_else(|e| panic!("{field} does not read as expected ({e}): {data}"))
    }

    /// `rotateApiKey` with a grace period (0: the old secret fails at once).
    pub async fn rotate_api_key(&self, actor: &str, id: &str, grace_seconds: i64) -> CreatedApiKey {
        self.op(
            actor,
            ROTATE_API_KEY,
            json!({ "id": id, "g": grace_seconds }),
            "rotateApiKey",
        )
        .await
    }

    /// `revokeApiKey`.
    pub async fn revoke_api_key(&self, actor: &str, id: &str) -> ApiKey {
        self.op(actor, REVOKE_API_KEY, json!({ "id": id }), "revokeApiKey")
            .await
    }

    /// `createModel` with a `ModelInput`.
    pub async fn create_model(&self, actor: &str, input: Value) -> Model {
        self.op(actor, CREATE_MODEL, json!({ "i": input }), "createModel")
            .await
    }

    /// `createRecord`: a draft of `model_key`.
    pub async fn create_record(&self, actor: &str, model_key: &str, data: Value) -> Record {
        self.op(
            actor,
            CREATE_RECORD,
            json!({ "m": model_key, "d": data }),
            "createRecord",
        )
        .await
    }

    /// `publishRecord`.
    pub async fn publish_record(&self, actor: &str, id: &str) -> Record {
        self.op(actor, PUBLISH_RECORD, json!({ "id": id }), "publishRecord")
            .await
    }
}
