//! Where file bytes live: one [`Storage`] over an `object_store` backend,
//! local disk (`QUIRE_FILES_DIR`) or S3-compatible storage
//! (`QUIRE_FILES_URL=s3://BUCKET/PREFIX`, the `AWS_*` variables).
//!
//! Objects are named `{project}/{file}/original` and
//! `{project}/{file}/v/{variant}`: server-made ids only, never a client's
//! filename, so no name a client sends can reach outside the store.
//! Uploads go through [`Upload`], which streams parts of at most
//! [`PART_BYTES`] (at most [`PARTS_IN_FLIGHT`] at once) and aborts itself
//! when dropped unfinished, so an upload cut off leaves nothing behind.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, PutPayload, WriteMultipart,
};

use crate::config::FilesConfig;
use crate::error::{AppError, AppResult};

/// Bytes per uploaded part (S3's smallest part but the last).
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts being written at once per upload: bounds an upload's memory to
/// about `(PARTS_IN_FLIGHT + 1) * PART_BYTES`.
pub const PARTS_IN_FLIGHT: usize = 2;

/// The file store of one instance.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// What the store is, for logs (`local:/srv/files`, `s3://bucket/prefix`).
    pub describe: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// A stored object read back: its bytes as a stream, and its full size.
pub struct Fetched {
    pub size: u64,
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl Storage {
    /// The store the configuration names: S3 when `QUIRE_FILES_URL` is set,
    /// else the local directory (created when missing).
    pub fn from_config(config: &FilesConfig) -> Result<Self, String> {
        match &config.files_url {
            Some(url) => Self::s3(url.expose()),
            None => Self::local(&config.files_dir),
        }
    }

    /// Files in a local directory.
    pub fn local(dir: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create QUIRE_FILES_DIR {dir}: {e}"))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| format!("cannot use QUIRE_FILES_DIR {dir}: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            describe: format!("local:{dir}"),
        })
    }

    /// Files in S3-compatible storage: `s3://BUCKET` or `s3://BUCKET/PREFIX`,
    /// credentials, region and endpoint from the standard `AWS_*` variables
    /// (`AWS_ENDPOINT_URL` for S3-compatible servers; plain `http://` is
    /// allowed for such an endpoint).
    pub fn s3(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("QUIRE_FILES_URL must start with s3:// (got {url})"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("QUIRE_FILES_URL names no bucket".into());
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint.clone());
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder
            .build()
            .map_err(|e| format!("cannot use QUIRE_FILES_URL: {e}"))?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(Self {
            store,
            describe: format!("s3://{bucket}/{prefix}"),
        })
    }

    /// The original bytes of a file.
    pub fn original(project_id: &str, file_id: &str) -> Path {
        Path::from_iter([project_id, file_id, "original"])
    }

    /// A variant of a file (`key` from [`super::variant::Variant::key`]).
    pub fn variant(project_id: &str, file_id: &str, key: &str) -> Path {
        Path::from_iter([project_id, file_id, "v", key])
    }

    /// Everything stored for a file.
    fn all_of(project_id: &str, file_id: &str) -> Path {
        Path::from_iter([project_id, file_id])
    }

    /// Starts a streamed upload to `path`.
    pub async fn upload(&self, path: &Path) -> AppResult<Upload> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(storage_error)?;
        Ok(Upload {
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES)),
        })
    }

    /// Stores small bytes whole (a variant).
    pub async fn put(&self, path: &Path, bytes: Bytes) -> AppResult<()> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// Reads an object, or the byte `range` of it; `None` when it is not
    /// there.
    pub async fn get(&self, path: &Path, range: Option<Range<u64>>) -> AppResult<Option<Fetched>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(path, options).await {
            Ok(got) => {
                let size = got.meta.size;
                let body = match got.payload {
                    GetResultPayload::File(file, _) => local_body(file, got.range).await?,
                    GetResultPayload::Stream(stream) => stream
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .boxed(),
                };
                Ok(Some(Fetched { size, body }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Reads a whole object into memory (an image about to be transformed).
    pub async fn read_all(&self, path: &Path) -> AppResult<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(storage_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Removes one object (gone already is fine).
    pub async fn delete(&self, path: &Path) -> AppResult<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Removes a file's original and every variant.
    pub async fn delete_file(&self, project_id: &str, file_id: &str) -> AppResult<()> {
        let prefix = Self::all_of(project_id, file_id);
        let paths: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(storage_error)?;
        for path in paths {
            self.delete(&path).await?;
        }
        Ok(())
    }

    /// Every object under `project_id` (tests and checks: what is left).
    pub async fn list_project(&self, project_id: &str) -> AppResult<Vec<String>> {
        let prefix = Path::from(project_id);
        self.store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(storage_error)
    }
}

/// An upload under way. [`Upload::finish`] makes the object appear whole;
/// dropped before that (an error, a client gone), it is aborted and
/// nothing is left in the store.
pub struct Upload {
    writer: Option<WriteMultipart>,
}

impl Upload {
    /// Queues `bytes`, first waiting while [`PARTS_IN_FLIGHT`] parts are
    /// being written (so a fast client cannot fill memory).
    pub async fn write(&mut self, bytes: &[u8]) -> AppResult<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(AppError::internal("write after the upload ended"));
        };
        writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(storage_error)?;
        writer.write(bytes);
        Ok(())
    }

    /// Completes the object.
    pub async fn finish(mut self) -> AppResult<()> {
        let Some(writer) = self.writer.take() else {
            return Err(AppError::internal("the upload ended already"));
        };
        writer.finish().await.map_err(storage_error)?;
        Ok(())
    }

    /// Gives the upload up, waiting until the store has dropped its parts.
    pub async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            if let Err(e) = writer.abort().await {
                tracing::warn!(error = %e, "aborting a file upload failed");
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = writer.abort().await {
                        tracing::warn!(error = %e, "aborting a dropped file upload failed");
                    }
                });
            }
        }
    }
}

/// Reads at most this much of a local file in one blocking call: a small
/// file is one read and one chunk.
const SMALL_READ: u64 = 1024 * 1024;
/// Chunk size when streaming a larger local file (object_store's own local
/// stream reads 8 KiB per blocking call, 13 calls for 100 KiB).
const STREAM_CHUNK: usize = 256 * 1024;

/// The bytes `range` of a local file: read whole when small, else streamed
/// in [`STREAM_CHUNK`] pieces.
async fn local_body(
    file: std::fs::File,
    range: Range<u64>,
) -> AppResult<BoxStream<'static, Result<Bytes, std::io::Error>>> {
    use std::io::{Read, Seek, SeekFrom};
    use tokio::io::AsyncReadExt;
    let len = range.end.saturating_sub(range.start);
    if len <= SMALL_READ {
        let bytes = tokio::task::spawn_blocking(move || {
            let mut file = file;
            file.seek(SeekFrom::Start(range.start))?;
            let mut buf = vec![0; usize::try_from(len).unwrap_or(0)];
            file.read_exact(&mut buf)?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        })
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
        return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
    }
    let mut file = tokio::fs::File::from_std(file);
    tokio::io::AsyncSeekExt::seek(&mut file, SeekFrom::Start(range.start))
        .await
        .map_err(AppError::internal)?;
    let reader = file.take(len);
    Ok(tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK).boxed())
}

/// A store failure: logged with its cause, answered as an internal error.
fn storage_error(e: object_store::Error) -> AppError {
    AppError::internal(e)
}
