//! Taking an upload in: the bytes stream to the store while their SHA-256
//! and size are counted; the first [`HEAD_BYTES`] are held back long enough
//! to read the magic number and, for images, the dimensions from the
//! header (never decoding the image). A file over the size limit is
//! refused the moment it crosses it; an image whose header declares more
//! than [`MAX_PIXELS`] is refused before anything is stored.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use sha2::{Digest, Sha256};

use super::store::Storage;
use super::variant::MAX_PIXELS;
use crate::error::{AppError, AppResult};

/// Bytes held back to find the type and the dimensions (a JPEG's size
/// comes after its EXIF block, which can be large).
pub const HEAD_BYTES: usize = 256 * 1024;

/// What the bytes turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
}

/// The types detected from their magic numbers (SPEC §7); a declared type
/// among them is believed only when the bytes agree.
const DETECTED: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
];

/// Whether `content_type` is an image variants can be made of.
pub fn is_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// The file's type: from its magic number for the formats SPEC §7 names,
/// else the declared one (unless it names one of those formats, which the
/// bytes then contradict), else `application/octet-stream`.
pub fn content_type(head: &[u8], declared: Option<&str>) -> String {
    if let Some(kind) = infer::get(head) {
        if DETECTED.contains(&kind.mime_type()) {
            return kind.mime_type().to_owned();
        }
    }
    let declared = declared
        .and_then(|d| d.split(';').next())
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| valid_mime(d) && !DETECTED.contains(&d.as_str()));
    declared.unwrap_or_else(|| "application/octet-stream".to_owned())
}

fn valid_mime(s: &str) -> bool {
    s.len() <= 127 && s.parse::<mime::Mime>().is_ok() && s != "multipart/form-data"
}

/// Width and height of an image from its header; an image whose header
/// cannot be read, or that declares more than 50 Mpx, is refused (400).
pub fn dimensions(head: &[u8], content_type: &str) -> AppResult<Option<(i32, i32)>> {
    if !is_image(content_type) {
        return Ok(None);
    }
    let size = imagesize::blob_size(head).map_err(|_| {
        AppError::BadRequest(format!(
            "the file looks like {content_type} but its header cannot be read"
        ))
    })?;
    let pixels = (size.width as u64).saturating_mul(size.height as u64);
    if pixels > MAX_PIXELS || size.width == 0 || size.height == 0 {
        return Err(AppError::BadRequest(format!(
            "the image declares {}x{} pixels; at most {MAX_PIXELS} pixels are accepted",
            size.width, size.height
        )));
    }
    let w = i32::try_from(size.width).map_err(|_| AppError::BadRequest("image too wide".into()))?;
    let h =
        i32::try_from(size.height).map_err(|_| AppError::BadRequest("image too tall".into()))?;
    Ok(Some((w, h)))
}

/// Streams `body` into `path` of `store`; refuses with 413 as soon as more
/// than `max_bytes` arrive. Whatever fails, nothing is left in the store.
pub async fn ingest<S, E>(
    store: &Storage,
    path: &Path,
    declared: Option<&str>,
    mut body: S,
    max_bytes: u64,
) -> AppResult<Ingested>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::new();
    let mut kind: Option<(String, Option<(i32, i32)>)> = None;
    let mut upload = None;
    let too_large = || {
        AppError::PayloadTooLarge(format!(
            "the file is larger than {max_bytes} bytes (QUIRE_MAX_FILE_BYTES)"
        ))
    };
    loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                return Err(AppError::BadRequest(format!("the upload was cut off: {e}")))
            }
            None => break,
        };
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(too_large());
        }
        hasher.update(&chunk);
        if kind.is_none() {
            head.extend_from_slice(&chunk);
            if head.len() < HEAD_BYTES {
                continue;
            }
            let found = recognise(&head, declared)?;
            kind = Some(found);
            let mut started = store.upload(path).await?;
            started.write(&head).await?;
            head = Vec::new();
            upload = Some(started);
            continue;
        }
        if let Some(up) = upload.as_mut() {
            up.write(&chunk).await?;
        }
    }
    let (content_type, dims) = match kind {
        Some(found) => found,
        None => {
            let found = recognise(&head, declared)?;
            let mut started = store.upload(path).await?;
            started.write(&head).await?;
            upload = Some(started);
            found
        }
    };
    if let Some(up) = upload {
        up.finish().await?;
    }
    Ok(Ingested {
        size,
        sha256: hex::encode(hasher.finalize()),
        content_type,
        width: dims.map(|d| d.0),
        height: dims.map(|d| d.1),
    })
}

fn recognise(head: &[u8], declared: Option<&str>) -> AppResult<(String, Option<(i32, i32)>)> {
    let content_type = content_type(head, declared);
    let dims = dimensions(head, &content_type)?;
    Ok((content_type, dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0,
        0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
    ];

    #[test]
    fn the_bytes_decide_the_type_before_the_declaration() {
        assert_eq!(content_type(PNG_1X1, Some("text/html")), "image/png");
        assert_eq!(content_type(b"%PDF-1.7\n", None), "application/pdf");
        assert_eq!(
            content_type(b"hello", Some("text/plain; charset=utf-8")),
            "text/plain"
        );
        assert_eq!(
            content_type(b"<html>", Some("image/png")),
            "application/octet-stream",
            "a declared PNG that is not one is not believed"
        );
        assert_eq!(
            content_type(b"x", Some("not a type")),
            "application/octet-stream"
        );
        assert_eq!(content_type(b"x", None), "application/octet-stream");
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused() {
        let mut bomb = PNG_1X1.to_vec();
        // 100000 x 100000 in the IHDR.
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(dimensions(&bomb, "image/png").is_err());
        assert!(matches!(dimensions(PNG_1X1, "image/png"), Ok(Some((1, 1)))));
    }
}
