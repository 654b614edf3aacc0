//! File fields (SPEC §7). The rules live in `crate::files`.
//!
//! `File.url` and `File.previewUrl` are absolute: their base is
//! `QUIRE_PUBLIC_URL`, else the origin of the request, which the HTTP layer
//! puts in [`ORIGIN`] for the request's task.

use async_graphql::{Context, Enum, InputObject, Object, ID};
use entity::files;

use super::types::{PageInfo, Stamp};
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::files::service::DEFAULT_LIMIT;

tokio::task_local! {
    /// `http://host:port` of the request being answered (from `Host`).
    pub static ORIGIN: String;
}

fn origin() -> String {
    ORIGIN
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "http://localhost".to_owned())
}

#[derive(Default)]
pub struct FilesQuery;

#[derive(Default)]
pub struct FilesMutation;

/// `DRAFT` (served only through a signed URL) or `PUBLISHED`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "FileStatus")]
pub enum GqlFileStatus {
    Draft,
    Published,
}

/// What `updateFile` changes; omitted parts stay.
#[derive(InputObject)]
pub struct UpdateFileInput {
    /// One name (no `/`), at most 255 bytes: the last segment of the URL.
    pub filename: Option<String>,
    /// Alternative text for images.
    pub alt: Option<String>,
}

/// A file: bytes in storage, metadata here.
pub struct File(pub files::Model);

#[Object]
impl File {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn filename(&self) -> &str {
        &self.0.filename
    }
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }
    /// Bytes.
    async fn size(&self) -> i64 {
        self.0.size
    }
    /// Lower-case hex SHA-256 of the bytes (also the `ETag`).
    async fn sha256(&self) -> &str {
        &self.0.sha256
    }
    /// Pixels, for images.
    async fn width(&self) -> Option<i32> {
        self.0.width
    }
    async fn height(&self) -> Option<i32> {
        self.0.height
    }
    async fn alt(&self) -> Option<&str> {
        self.0.alt.as_deref()
    }
    async fn status(&self) -> GqlFileStatus {
        if self.0.published_at.is_some() {
            GqlFileStatus::Published
        } else {
            GqlFileStatus::Draft
        }
    }
    /// The public URL of a published file (no key needed); `null` for a draft.
    async fn url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(app(ctx)?.files.url(&self.0, &origin()))
    }
    /// A signed URL that serves the file whatever its state, valid for
    /// `expiresInSeconds` (1–604800); only for keys that may preview.
    async fn preview_url(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 900)] expires_in_seconds: i64,
    ) -> async_graphql::Result<Option<String>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(Some(app.files.preview_url(
            p,
            &self.0,
            &origin(),
            expires_in_seconds,
        )?))
    }
    async fn created_at(&self) -> Stamp {
        self.0.created_at.into()
    }
    async fn published_at(&self) -> Option<Stamp> {
        self.0.published_at.map(Stamp)
    }
}

/// One page of files, newest first.
pub struct FilePage {
    items: Vec<files::Model>,
    page_info: PageInfo,
    total_count: u64,
}

#[Object]
impl FilePage {
    async fn items(&self) -> Vec<File> {
        self.items.iter().cloned().map(File).collect()
    }
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// How many files the view shows, over all pages.
    async fn total_count(&self) -> i64 {
        i64::try_from(self.total_count).unwrap_or(i64::MAX)
    }
}

#[Object]
impl FilesQuery {
    /// One page of the project's files, newest first: published ones unless
    /// `preview` (secret TEST keys holding `drafts:read` only).
    #[graphql(guard = "RequireScope(Scope::FilesRead)")]
    async fn files(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_LIMIT as i64)")] limit: Option<i64>,
        after: Option<String>,
        #[graphql(default_with = "Some(false)")] preview: Option<bool>,
    ) -> async_graphql::Result<FilePage> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let page = app
            .files
            .list(
                p,
                limit.unwrap_or(DEFAULT_LIMIT as i64),
                after.as_deref(),
                preview.unwrap_or(false),
            )
            .await?;
        Ok(FilePage {
            items: page.items,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: page.end_cursor,
            },
            total_count: page.total_count,
        })
    }

    /// One file; `null` when it does not exist or the view does not show it.
    #[graphql(guard = "RequireScope(Scope::FilesRead)")]
    async fn file(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "Some(false)")] preview: Option<bool>,
    ) -> async_graphql::Result<Option<File>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let row = app.files.get(p, &id, preview.unwrap_or(false)).await?;
        Ok(row.map(File))
    }
}

#[Object]
impl FilesMutation {
    /// Renames a file or sets its alt text.
    #[graphql(guard = "RequireScope(Scope::FilesWrite)")]
    async fn update_file(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateFileInput,
    ) -> async_graphql::Result<File> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let row = app.files.update(p, &id, input.filename, input.alt).await?;
        Ok(File(row))
    }

    /// Publishes a file: its URL serves it to anyone from now on.
    #[graphql(guard = "RequireScope(Scope::FilesWrite)")]
    async fn publish_file(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<File> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(File(app.files.publish(p, &id).await?))
    }

    /// Unpublishes a file: its URL answers 404 on every instance.
    #[graphql(guard = "RequireScope(Scope::FilesWrite)")]
    async fn unpublish_file(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<File> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(File(app.files.unpublish(p, &id).await?))
    }

    /// Deletes a file, its bytes and its variants; `CONFLICT` while a
    /// record names it.
    #[graphql(guard = "RequireScope(Scope::FilesDelete)")]
    async fn delete_file(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        app.files.delete(p, &id).await?;
        Ok(true)
    }
}
