//! [`FileService`]: the one door to files. Uploads stream to the store and
//! then insert the row (with its event) through [`Database::write`]; every
//! other change is one transaction of [`super::rows`], then the change is
//! announced to [`Changes`] (which wakes event streams here and on other
//! instances). Delivery reads the row on every request (no metadata cache),
//! so an unpublish or a delete on any instance takes effect everywhere at
//! its commit.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use entity::files;
use futures::Stream;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::Semaphore;

use super::rows;
use super::sign::Signer;
use super::store::Storage;
use super::upload::{self, is_image};
use super::variant::{self, RenderError, Variant};
use crate::auth::principal::Principal;
use crate::changes::{Change, Changes};
use crate::clock::Clock;
use crate::config::FilesConfig;
use crate::db::{new_id, Database};
use crate::error::{AppError, AppResult};

/// Default and largest page of `files`.
pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;
/// Longest a preview URL may be valid (7 days).
pub const MAX_PREVIEW_SECONDS: i64 = 7 * 24 * 3600;
/// Longest filename, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// One page of files.
#[derive(Debug)]
pub struct FilePage {
    pub items: Vec<files::Model>,
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
    pub total_count: u64,
}

/// The file service of one instance.
pub struct FileService {
    db: Database,
    clock: Arc<dyn Clock>,
    changes: Arc<Changes>,
    /// Where the bytes live.
    pub storage: Storage,
    signer: Signer,
    /// Transforms running at once (`QUIRE_MAX_IMAGE_TRANSFORMS`).
    transforms: Arc<Semaphore>,
    /// How long a transform may take, its wait for a permit included
    /// (`QUIRE_IMAGE_TRANSFORM_SECONDS`).
    transform_deadline: Duration,
    /// `QUIRE_MAX_FILE_BYTES`.
    pub max_file_bytes: u64,
    /// `QUIRE_PUBLIC_URL`, without a trailing `/`.
    public_url: Option<String>,
}

impl FileService {
    /// The service over `db` with the configured store and signing secret.
    pub async fn new(
        config: &FilesConfig,
        db: Database,
        clock: Arc<dyn Clock>,
        changes: Arc<Changes>,
    ) -> Result<Self, String> {
        let storage = Storage::from_config(config)?;
        let signer = Signer::load(
            &db.conn,
            config.signing_secret.as_ref().map(|s| s.0.as_str()),
        )
        .await
        .map_err(|e| format!("cannot load the URL signing secret: {}", e.cause()))?;
        Ok(Self {
            db,
            clock,
            changes,
            storage,
            signer,
            transforms: Arc::new(Semaphore::new(config.max_image_transforms.max(1))),
            transform_deadline: Duration::from_secs(config.image_transform_seconds.max(1)),
            max_file_bytes: config.max_file_bytes,
            public_url: config
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        })
    }

    /// Takes an upload in: streams `body` to the store, then records the
    /// file (a draft) and its `file.created`. Whatever fails, nothing is
    /// left behind.
    pub async fn upload<S, E>(
        &self,
        p: &Principal,
        filename: &str,
        declared: Option<&str>,
        body: S,
    ) -> AppResult<files::Model>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let filename = upload_filename(filename)?;
        let id = new_id();
        let path = Storage::original(&p.project_id, &id);
        let got = upload::ingest(&self.storage, &path, declared, body, self.max_file_bytes).await?;
        let now = self.clock.now();
        let row = files::Model {
            id,
            project_id: p.project_id.clone(),
            filename,
            content_type: got.content_type,
            size: i64::try_from(got.size).unwrap_or(i64::MAX),
            sha256: got.sha256,
            width: got.width,
            height: got.height,
            alt: None,
            created_at: now,
            updated_at: now,
            published_at: None,
        };
        let written = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { rows::insert(txn, row).await })
            }))
            .await;
        match written {
            Ok(row) => {
                self.announce(&row).await;
                Ok(row)
            }
            Err(e) => {
                if let Err(cleanup) = self.storage.delete(&path).await {
                    tracing::warn!(error = %cleanup.cause(), "could not remove an upload whose row was not written");
                }
                Err(e)
            }
        }
    }

    /// One page of the project's files, newest first, in the view the key
    /// may have.
    pub async fn list(
        &self,
        p: &Principal,
        limit: i64,
        after: Option<&str>,
        preview: bool,
    ) -> AppResult<FilePage> {
        super::check_view(p, preview)?;
        let limit = u64::try_from(limit)
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| AppError::bad_field("limit", format!("limit must be 1–{MAX_LIMIT}")))?;
        let mut base = files::Entity::find().filter(files::Column::ProjectId.eq(&p.project_id));
        if !preview {
            base = base.filter(files::Column::PublishedAt.is_not_null());
        }
        let total_count = base.clone().count(&self.db.conn).await?;
        let mut q = base;
        if let Some(cursor) = after {
            let id = decode_cursor(cursor)?;
            let at = files::Entity::find_by_id(id.clone())
                .filter(files::Column::ProjectId.eq(&p.project_id))
                .one(&self.db.conn)
                .await?
                .ok_or_else(|| {
                    AppError::bad_field(
                        "after",
                        "this cursor names a file that is gone; start again",
                    )
                })?;
            q = q.filter(
                Condition::any()
                    .add(files::Column::CreatedAt.lt(at.created_at))
                    .add(
                        Condition::all()
                            .add(files::Column::CreatedAt.eq(at.created_at))
                            .add(files::Column::Id.lt(id)),
                    ),
            );
        }
        let mut items = q
            .order_by_desc(files::Column::CreatedAt)
            .order_by_desc(files::Column::Id)
            .limit(limit + 1)
            .all(&self.db.conn)
            .await?;
        let has_next_page = items.len() as u64 > limit;
        items.truncate(limit as usize);
        let end_cursor = items.last().map(|f| URL_SAFE_NO_PAD.encode(&f.id));
        Ok(FilePage {
            items,
            has_next_page,
            end_cursor,
            total_count,
        })
    }

    /// One file of the project, `None` when the view does not show it.
    pub async fn get(
        &self,
        p: &Principal,
        id: &str,
        preview: bool,
    ) -> AppResult<Option<files::Model>> {
        super::check_view(p, preview)?;
        let row = files::Entity::find_by_id(id.to_owned())
            .filter(files::Column::ProjectId.eq(&p.project_id))
            .one(&self.db.conn)
            .await?;
        Ok(row.filter(|f| preview || f.published_at.is_some()))
    }

    /// A file by id, whatever its project (delivery: the id is the secret).
    pub async fn find(&self, id: &str) -> AppResult<Option<files::Model>> {
        Ok(files::Entity::find_by_id(id.to_owned())
            .one(&self.db.conn)
            .await?)
    }

    /// Renames a file or sets its alt text.
    pub async fn update(
        &self,
        p: &Principal,
        id: &str,
        filename: Option<String>,
        alt: Option<String>,
    ) -> AppResult<files::Model> {
        let filename = filename.map(|f| graphql_filename(&f)).transpose()?;
        if let Some(a) = &alt {
            if a.chars().count() > 1000 {
                return Err(AppError::bad_field(
                    "alt",
                    "alt holds at most 1000 characters",
                ));
            }
        }
        let (project, id, now) = (p.project_id.clone(), id.to_owned(), self.clock.now());
        let row = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { rows::update(txn, &project, &id, filename, alt, now).await })
            }))
            .await?;
        self.announce(&row).await;
        Ok(row)
    }

    /// Publishes a file: its public URL serves it from now on.
    pub async fn publish(&self, p: &Principal, id: &str) -> AppResult<files::Model> {
        let (project, id, now) = (p.project_id.clone(), id.to_owned(), self.clock.now());
        let row = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { rows::publish(txn, &project, &id, now).await })
            }))
            .await?;
        self.announce(&row).await;
        Ok(row)
    }

    /// Unpublishes a file: its public URL answers 404 from the commit on.
    pub async fn unpublish(&self, p: &Principal, id: &str) -> AppResult<files::Model> {
        let (project, id, now) = (p.project_id.clone(), id.to_owned(), self.clock.now());
        let row = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { rows::unpublish(txn, &project, &id, now).await })
            }))
            .await?;
        self.announce(&row).await;
        Ok(row)
    }

    /// Deletes a file no record names, then its bytes and variants.
    pub async fn delete(&self, p: &Principal, id: &str) -> AppResult<()> {
        let (project, id, now) = (p.project_id.clone(), id.to_owned(), self.clock.now());
        let row = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { rows::delete(txn, &project, &id, now).await })
            }))
            .await?;
        self.announce(&row).await;
        if let Err(e) = self.storage.delete_file(&row.project_id, &row.id).await {
            tracing::warn!(file = %row.id, error = %e.cause(), "a deleted file's bytes could not be removed");
        }
        Ok(())
    }

    async fn announce(&self, row: &files::Model) {
        self.changes
            .committed(Change::File {
                project_id: row.project_id.clone(),
                file_id: row.id.clone(),
            })
            .await;
    }

    /// The path of a file's URL.
    pub fn path(row: &files::Model) -> String {
        format!("/files/{}/{}", row.id, encode_segment(&row.filename))
    }

    /// The base of absolute URLs: `QUIRE_PUBLIC_URL`, else `origin`.
    pub fn base<'a>(&'a self, origin: &'a str) -> &'a str {
        self.public_url.as_deref().unwrap_or(origin)
    }

    /// The public URL of a published file, else `None`.
    pub fn url(&self, row: &files::Model, origin: &str) -> Option<String> {
        row.published_at
            .map(|_| format!("{}{}", self.base(origin), Self::path(row)))
    }

    /// A signed URL valid for `seconds` (1–604800) that serves the file
    /// whatever its state; `FORBIDDEN` unless the key may preview.
    pub fn preview_url(
        &self,
        p: &Principal,
        row: &files::Model,
        origin: &str,
        seconds: i64,
    ) -> AppResult<String> {
        super::check_view(p, true)?;
        if !(1..=MAX_PREVIEW_SECONDS).contains(&seconds) {
            return Err(AppError::bad_field(
                "expiresInSeconds",
                format!("expiresInSeconds must be 1–{MAX_PREVIEW_SECONDS}"),
            ));
        }
        let path = Self::path(row);
        let expires = self.clock.now().timestamp() + seconds;
        let sig = self.signer.sign(&path, expires);
        Ok(format!(
            "{}{path}?expires={expires}&sig={sig}",
            self.base(origin)
        ))
    }

    /// Whether `sig` and `expires` sign the file's URL path now.
    pub fn signed(&self, row: &files::Model, expires: i64, sig: &str) -> bool {
        self.signer
            .verify(&Self::path(row), expires, sig, self.clock.now().timestamp())
    }

    /// The permits of the transforms running at once (one each); tests
    /// hold them to fill the bound.
    pub fn transform_permits(&self) -> &Arc<Semaphore> {
        &self.transforms
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The variant `v` of an image file: read from the store when made
    /// before, else made (at most `QUIRE_MAX_IMAGE_TRANSFORMS` at once,
    /// abandoned after `QUIRE_IMAGE_TRANSFORM_SECONDS` with 503) and stored.
    pub async fn variant(
        &self,
        row: &files::Model,
        v: &Variant,
    ) -> AppResult<(Bytes, &'static str)> {
        if !is_image(&row.content_type) {
            return Err(AppError::BadRequest(
                "w, h, fit, fm and q apply to PNG, JPEG, GIF and WebP images only".into(),
            ));
        }
        let content_type = v.format(&row.content_type).content_type();
        let path = Storage::variant(&row.project_id, &row.id, &v.key(&row.content_type));
        if let Some(bytes) = self.storage.read_all(&path).await? {
            return Ok((bytes, content_type));
        }
        let deadline = tokio::time::Instant::now() + self.transform_deadline;
        let seconds = self.transform_deadline.as_secs();
        let busy =
            || AppError::unavailable(format!("an image transform took longer than {seconds} s"));
        let permit =
            tokio::time::timeout_at(deadline, Arc::clone(&self.transforms).acquire_owned())
                .await
                .map_err(|_| busy())?
                .map_err(AppError::internal)?;
        let original = self
            .storage
            .read_all(&Storage::original(&row.project_id, &row.id))
            .await?
            .ok_or_else(|| {
                AppError::internal(format!("the bytes of file {} are missing", row.id))
            })?;
        let (v2, ct) = (*v, row.content_type.clone());
        // The permit goes with the work: an abandoned transform still holds
        // its place until it ends, so abandoned ones cannot pile up.
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            variant::render(&original, &ct, &v2)
        });
        let rendered = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| busy())?
            .map_err(AppError::internal)?;
        let bytes = match rendered {
            Ok(bytes) => Bytes::from(bytes),
            Err(RenderError::BadImage(why)) => {
                return Err(AppError::BadRequest(format!(
                    "this image cannot be transformed: {why}"
                )))
            }
            Err(RenderError::Encode(why)) => return Err(AppError::internal(why)),
        };
        self.storage.put(&path, bytes.clone()).await?;
        Ok((bytes, content_type))
    }
}

/// The filename of an upload: what follows the last `/` or `\` (so
/// `../../etc/passwd` is `passwd`), without control characters; empty,
/// `.` or `..` is refused.
pub fn upload_filename(raw: &str) -> AppResult<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().to_owned();
    check_filename(&clean).map_err(AppError::BadRequest)?;
    Ok(clean)
}

/// A new filename from `updateFile`: one path segment, or `BAD_USER_INPUT`.
fn graphql_filename(raw: &str) -> AppResult<String> {
    if raw.contains(['/', '\\']) || raw.chars().any(char::is_control) {
        return Err(AppError::bad_field(
            "filename",
            "a filename is one name: no /, \\ or control characters",
        ));
    }
    let clean = raw.trim().to_owned();
    check_filename(&clean).map_err(|m| AppError::bad_field("filename", m))?;
    Ok(clean)
}

fn check_filename(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(
            "the file needs a name (?filename=NAME, or the multipart part's filename)".into(),
        );
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(format!("a filename has at most {MAX_FILENAME_BYTES} bytes"));
    }
    Ok(())
}

/// A filename as one URL path segment.
pub fn encode_segment(name: &str) -> String {
    const KEEP: &[u8] = b"-._~!$&'()*+,;=:@";
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_cursor(cursor: &str) -> AppResult<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| AppError::bad_field("after", "not a cursor this API gave out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_filenames_lose_their_directories() {
        assert_eq!(
            upload_filename("../../etc/passwd").ok().as_deref(),
            Some("passwd")
        );
        assert_eq!(
            upload_filename("a\\b\\c.png").ok().as_deref(),
            Some("c.png")
        );
        assert!(upload_filename("..").is_err());
        assert!(upload_filename("dir/").is_err());
        assert!(graphql_filename("../x").is_err());
        assert_eq!(encode_segment("a b/é.png"), "a%20b%2F%C3%A9.png");
    }
}
