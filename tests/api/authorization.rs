//! Who may call what (SPEC §2): one table of every Query and Mutation field
//! that needs a scope, with the scopes it needs, run against every kind of
//! key. For each row and each kind (`pk_live_`, `pk_test_`, `sk_live_`,
//! `sk_test_`):
//!
//! - a kind that may hold the needed scopes: a key holding exactly them is
//!   not refused (the call may still fail for another reason: a made-up id
//!   is `NOT_FOUND`), and a key holding every other scope that kind may hold
//!   is `FORBIDDEN`, naming the scope it lacks;
//! - a kind that may not hold them (public keys hold public scopes only,
//!   `drafts:read` is for `sk_test_` keys only): a key holding everything it
//!   may (`*`) is `FORBIDDEN`.
//!
//! A second test checks the table against `schema.graphql`, so a new field
//! cannot be added without saying what it needs.

use std::collections::BTreeSet;

use quire::auth::key::{prefix_for, KeyMode, KeyType};
use quire::auth::scopes::{Scope, ScopeSet};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::CREATE_API_KEY;
use crate::support::{Reply, TestApp};

/// One GraphQL operation and the scopes a key needs to call it.
struct Operation {
    /// The Query or Mutation field it calls.
    field: &'static str,
    document: &'static str,
    variables: fn(&Fixture) -> Value,
    needs: &'static [&'static str],
}

/// What the rows point at: the `page` model and one draft record of it.
struct Fixture {
    record: String,
}

/// A made-up key id (`NOT_FOUND` for whoever may ask).
const NO_SUCH_KEY: &str = "00000000-0000-4000-8000-000000000000";

const OPERATIONS: &[Operation] = &[
    // Keys (SPEC §2).
    Operation {
        field: "apiKeys",
        document: "{ apiKeys { id } }",
        variables: |_| json!({}),
        needs: &["apikeys:read"],
    },
    Operation {
        field: "apiKey",
        document: "query($id: ID!) { apiKey(id: $id) { id } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["apikeys:read"],
    },
    Operation {
        field: "auditEvents",
        document: "{ auditEvents { items { id } } }",
        variables: |_| json!({}),
        needs: &["apikeys:read"],
    },
    Operation {
        field: "exportApiKeys",
        document: "{ exportApiKeys }",
        variables: |_| json!({}),
        needs: &["apikeys:read"],
    },
    Operation {
        field: "createApiKey",
        document: CREATE_API_KEY,
        variables: |_| {
            json!({ "i": { "name": format!("authz-{}", uuid::Uuid::new_v4().simple()),
                "type": "PUBLIC", "mode": "TEST", "scopes": [] } })
        },
        needs: &["apikeys:create"],
    },
    Operation {
        field: "updateApiKey",
        document: "mutation($id: ID!) { updateApiKey(id: $id, input: { name: \"renamed\" }) { id } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["apikeys:update"],
    },
    Operation {
        field: "rotateApiKey",
        document: "mutation($id: ID!) { rotateApiKey(id: $id) { key } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["apikeys:update"],
    },
    Operation {
        field: "importApiKeys",
        document: "mutation($k: JSON!) { importApiKeys(input: { keys: $k, mode: ADD_NEW_ONLY }) { imported } }",
        variables: |_| json!({ "k": { "version": 1, "keys": [] } }),
        needs: &["apikeys:import"],
    },
    Operation {
        field: "revokeApiKey",
        document: "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["apikeys:delete"],
    },
    // Content (SPEC §5): the published view, the draft view, models, records.
    Operation {
        field: "records",
        document: "{ records(modelKey: \"page\") { items { id } } }",
        variables: |_| json!({}),
        needs: &["records:read"],
    },
    Operation {
        field: "records",
        document: "{ records(modelKey: \"page\", preview: true) { items { id } } }",
        variables: |_| json!({}),
        needs: &["records:read", "drafts:read"],
    },
    Operation {
        field: "record",
        document: "query($id: ID!) { record(id: $id) { id } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:read"],
    },
    Operation {
        field: "record",
        document: "query($id: ID!) { record(id: $id, preview: true) { id } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:read", "drafts:read"],
    },
    // Search (SPEC §8): both scopes, and drafts:read for the draft view.
    Operation {
        field: "search",
        document: "{ search(query: \"page\") { items { score } } }",
        variables: |_| json!({}),
        needs: &["search:read", "records:read"],
    },
    Operation {
        field: "search",
        document: "{ search(query: \"page\", preview: true) { items { score } } }",
        variables: |_| json!({}),
        needs: &["search:read", "records:read", "drafts:read"],
    },
    Operation {
        field: "models",
        document: "{ models { key } }",
        variables: |_| json!({}),
        needs: &["schemas:read"],
    },
    Operation {
        field: "model",
        document: "{ model(key: \"page\") { key } }",
        variables: |_| json!({}),
        needs: &["schemas:read"],
    },
    Operation {
        field: "createModel",
        document: "mutation($k: String!) { createModel(input: { key: $k, name: \"Made\", fields: [] }) { key } }",
        variables: |_| json!({ "k": format!("m{}", uuid::Uuid::new_v4().simple()) }),
        needs: &["schemas:write"],
    },
    Operation {
        field: "updateModel",
        document: "mutation { updateModel(key: \"page\", input: { name: \"Page\" }) { key } }",
        variables: |_| json!({}),
        needs: &["schemas:write"],
    },
    Operation {
        field: "deleteModel",
        document: "mutation { deleteModel(key: \"no_such_model\") }",
        variables: |_| json!({}),
        needs: &["schemas:write"],
    },
    Operation {
        field: "createRecord",
        document: "mutation { createRecord(modelKey: \"page\", data: { title: \"made\" }) { id } }",
        variables: |_| json!({}),
        needs: &["records:write"],
    },
    Operation {
        field: "updateRecord",
        document: "mutation($id: ID!) { updateRecord(id: $id, data: { title: \"edited\" }) { id } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:write"],
    },
    Operation {
        field: "publishRecord",
        document: "mutation($id: ID!) { publishRecord(id: $id) { id } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:publish"],
    },
    Operation {
        field: "unpublishRecord",
        document: "mutation($id: ID!) { unpublishRecord(id: $id) { id } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:publish"],
    },
    Operation {
        field: "deleteRecord",
        document: "mutation($id: ID!) { deleteRecord(id: $id) }",
        variables: |_| json!({ "id": "00000000-0000-4000-8000-00000000d00d" }),
        needs: &["records:delete"],
    },
    // Usage (SPEC §10).
    Operation {
        field: "keyUsage",
        document: "{ keyUsage(from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { requests } }",
        variables: |_| json!({}),
        needs: &["analytics:read"],
    },
    // Schedules and versions (SPEC §11).
    Operation {
        field: "schedules",
        document: "{ schedules { items { id } } }",
        variables: |_| json!({}),
        needs: &["schedules:read"],
    },
    Operation {
        field: "scheduleRecord",
        document: "mutation($id: ID!, $at: DateTime!) { scheduleRecord(id: $id, action: PUBLISH, at: $at) { id } }",
        variables: |f| {
            json!({ "id": f.record, "at": quire::clock::stamp(chrono::Utc::now() + chrono::Duration::days(1)) })
        },
        needs: &["records:publish"],
    },
    Operation {
        field: "cancelSchedule",
        document: "mutation($id: ID!) { cancelSchedule(id: $id) { id } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["records:publish"],
    },
    Operation {
        field: "recordVersions",
        document: "query($id: ID!) { recordVersions(id: $id) { items { version } } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:read"],
    },
    Operation {
        field: "recordVersions",
        document: "query($id: ID!) { recordVersions(id: $id, preview: true) { items { version } } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:read", "drafts:read"],
    },
    Operation {
        field: "restoreRecordVersion",
        document: "mutation($id: ID!) { restoreRecordVersion(id: $id, version: 1) { id } }",
        variables: |f| json!({ "id": f.record }),
        needs: &["records:write"],
    },
    // Files (SPEC §7), on a made-up file id (NOT_FOUND for whoever may ask).
    Operation {
        field: "files",
        document: "{ files { totalCount } }",
        variables: |_| json!({}),
        needs: &["files:read"],
    },
    Operation {
        field: "file",
        document: "query($id: ID!) { file(id: $id) { id } }",
        variables: |_| json!({ "id": "00000000-0000-4000-8000-00000000f11e" }),
        needs: &["files:read"],
    },
    Operation {
        field: "updateFile",
        document: "mutation($id: ID!) { updateFile(id: $id, input: { alt: \"a\" }) { id } }",
        variables: |_| json!({ "id": "00000000-0000-4000-8000-00000000f11e" }),
        needs: &["files:write"],
    },
    Operation {
        field: "publishFile",
        document: "mutation($id: ID!) { publishFile(id: $id) { id } }",
        variables: |_| json!({ "id": "00000000-0000-4000-8000-00000000f11e" }),
        needs: &["files:write"],
    },
    Operation {
        field: "unpublishFile",
        document: "mutation($id: ID!) { unpublishFile(id: $id) { id } }",
        variables: |_| json!({ "id": "00000000-0000-4000-8000-00000000f11e" }),
        needs: &["files:write"],
    },
    Operation {
        field: "deleteFile",
        document: "mutation($id: ID!) { deleteFile(id: $id) }",
        variables: |_| json!({ "id": "00000000-0000-4000-8000-00000000f11e" }),
        needs: &["files:delete"],
    },
    // Events and webhooks (SPEC §9).
    Operation {
        field: "events",
        document: "{ events { items { id } } }",
        variables: |_| json!({}),
        needs: &["notifications:read"],
    },
    Operation {
        field: "webhooks",
        document: "{ webhooks { id } }",
        variables: |_| json!({}),
        needs: &["extensions:manage"],
    },
    Operation {
        field: "webhookDeliveries",
        document: "query($id: ID!) { webhookDeliveries(webhookId: $id) { items { id } } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["extensions:manage"],
    },
    Operation {
        field: "createWebhook",
        document: "mutation { createWebhook(input: { url: \"http://93.184.216.34/hook\", events: [\"record.*\"] }) { secret } }",
        variables: |_| json!({}),
        needs: &["extensions:manage"],
    },
    Operation {
        field: "updateWebhook",
        document: "mutation($id: ID!) { updateWebhook(id: $id, input: { url: \"http://93.184.216.34/hook\", events: [\"*\"] }) { id } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["extensions:manage"],
    },
    Operation {
        field: "deleteWebhook",
        document: "mutation($id: ID!) { deleteWebhook(id: $id) }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["extensions:manage"],
    },
    Operation {
        field: "rotateWebhookSecret",
        document: "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["extensions:manage"],
    },
    Operation {
        field: "redeliverWebhook",
        document: "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }",
        variables: |_| json!({ "id": NO_SUCH_KEY }),
        needs: &["extensions:manage"],
    },
];

/// Fields every authenticated key may call, whatever its scopes.
const OPEN_TO_EVERY_KEY: &[(&str, &str)] = &[("viewer", "{ viewer { key { id } } }")];

/// Every kind of key.
const KINDS: [(KeyType, KeyMode); 4] = [
    (KeyType::Public, KeyMode::Live),
    (KeyType::Public, KeyMode::Test),
    (KeyType::Secret, KeyMode::Live),
    (KeyType::Secret, KeyMode::Test),
];

impl Operation {
    async fn call(&self, app: &TestApp, key: &str, fixture: &Fixture) -> Reply {
        app.gql(key, self.document, (self.variables)(fixture)).await
    }

    /// How a failure names the row: the field, and the draft view when asked.
    fn label(&self) -> String {
        if self.document.contains("preview: true") {
            format!("{} (preview)", self.field)
        } else {
            self.field.to_owned()
        }
    }

    fn needed(&self) -> ScopeSet {
        self.needs
            .iter()
            .map(|name| Scope::parse(name).expect("a scope"))
            .collect()
    }
}

fn forbidden(reply: &Reply) -> bool {
    reply.codes().iter().any(|c| c == "FORBIDDEN")
}

both_dbs!(
    every_guarded_field_needs_its_scope,
    |app: TestApp| async move {
        let root = app.root_key().await;
        app.create_model(
        &root,
        json!({ "key": "page", "name": "Page", "fields": [{ "name": "title", "type": "STRING" }] }),
    )
    .await;
        let fixture = Fixture {
            record: app
                .create_record(&root, "page", json!({ "title": "draft" }))
                .await
                .id,
        };

        for op in OPERATIONS {
            let row = op.label();
            for (key_type, mode) in KINDS {
                let kind = prefix_for(key_type, mode);
                let grantable = ScopeSet::grantable(key_type, mode);
                if !op.needed().is_subset(grantable) {
                    let everything = app
                        .new_key()
                        .kind(key_type, mode)
                        .scopes(&["*"])
                        .create()
                        .await;
                    let reply = op.call(&app, &everything, &fixture).await;
                    assert_eq!(
                        reply.code(),
                        Some("FORBIDDEN"),
                        "{row}: a {kind} key cannot hold {:?}: {}",
                        op.needs,
                        reply.body
                    );
                    continue;
                }

                let holder = app
                    .new_key()
                    .kind(key_type, mode)
                    .scopes(op.needs)
                    .create()
                    .await;
                let reply = op.call(&app, &holder, &fixture).await;
                assert!(
                    reply.status == 200 && !forbidden(&reply),
                    "{row}: a {kind} key holding {:?} is refused: {}",
                    op.needs,
                    reply.body
                );

                for missing in op.needs {
                    let all_but: Vec<String> = grantable
                        .names()
                        .into_iter()
                        .filter(|s| s != missing)
                        .collect();
                    let lacking = app
                        .new_key()
                        .kind(key_type, mode)
                        .scopes(&all_but)
                        .create()
                        .await;
                    let reply = op.call(&app, &lacking, &fixture).await;
                    assert_eq!(
                        reply.code(),
                        Some("FORBIDDEN"),
                        "{row}: a {kind} key with every scope but {missing}: {}",
                        reply.body
                    );
                    assert!(
                        reply.message().contains(missing),
                        "{row}: the error names the scope {missing}: {}",
                        reply.message()
                    );
                }
            }
        }

        for (field, document) in OPEN_TO_EVERY_KEY {
            for (key_type, mode) in KINDS {
                let nothing = app.new_key().kind(key_type, mode).create().await;
                let reply = app.gql(&nothing, document, json!({})).await;
                assert!(
                    reply.status == 200 && reply.body.get("errors").is_none(),
                    "{field}: a {} key without scopes: {}",
                    prefix_for(key_type, mode),
                    reply.body
                );
            }
        }
    }
);

/// The names of `type Query`'s and `type Mutation`'s fields in an SDL.
fn root_fields(sdl: &str) -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    let mut in_root = false;
    let mut in_doc = false;
    for line in sdl.lines() {
        let text = line.trim();
        if line.starts_with("type Query {") || line.starts_with("type Mutation {") {
            in_root = true;
        } else if line.starts_with('}') {
            in_root = false;
        } else if text.starts_with("\"\"\"") {
            let one_line = text.len() > 3 && text.ends_with("\"\"\"");
            in_doc ^= !one_line;
        } else if in_root && !in_doc {
            let name = text.split(['(', ':']).next().unwrap_or("");
            fields.insert(name.to_owned());
        }
    }
    fields
}

#[test]
fn the_table_covers_every_field_of_the_schema() {
    let schema = root_fields(&quire::graphql::sdl());
    assert!(schema.contains("viewer") && schema.contains("deleteRecord"));
    let covered: BTreeSet<String> = OPERATIONS
        .iter()
        .map(|op| op.field)
        .chain(OPEN_TO_EVERY_KEY.iter().map(|(field, _)| *field))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        covered, schema,
        "every Query and Mutation field has a row here (or is open to every key)"
    );
    // Each row's document calls its field.
    for op in OPERATIONS {
        assert!(
            op.document.contains(&format!("{}(", op.field))
                || op.document.contains(&format!("{} ", op.field)),
            "{}: {}",
            op.field,
            op.document
        );
    }
}
