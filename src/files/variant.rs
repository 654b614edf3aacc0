//! Image variants (SPEC §7): `w`, `h` (1–4000), `fit`
//! (`cover`/`contain`/`fill`/`inside`), `fm` (`png`/`jpeg`/`webp`) and `q`
//! (1–100, jpeg). [`Variant::parse`] reads them from a URL's query;
//! [`render`] decodes, resizes and encodes (blocking: callers run it on the
//! blocking pool, a few at a time, with a deadline).

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits, Rgba, RgbaImage};

/// Largest `w` or `h`.
pub const MAX_SIDE: u32 = 4000;
/// Largest image decoded (or accepted at upload): 50 million pixels.
pub const MAX_PIXELS: u64 = 50_000_000;
/// `q` when a jpeg variant does not say.
pub const DEFAULT_QUALITY: u8 = 80;

/// How an image meets its box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Fill the box, cropping what falls outside.
    Cover,
    /// Fit in the box and pad to its size.
    Contain,
    /// Stretch to the box.
    Fill,
    /// Fit in the box, no padding.
    Inside,
}

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Webp => "webp",
        }
    }

    /// The format an image of `content_type` keeps when `fm` is not given
    /// (GIF becomes PNG: variants are still images).
    pub fn of_content_type(content_type: &str) -> Format {
        match content_type {
            "image/jpeg" => Format::Jpeg,
            "image/webp" => Format::Webp,
            _ => Format::Png,
        }
    }
}

/// The transform a URL asks for; `None` from [`Variant::parse`] means the
/// original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub w: Option<u32>,
    pub h: Option<u32>,
    pub fit: Fit,
    pub fm: Option<Format>,
    pub q: Option<u8>,
}

impl Variant {
    /// Reads the transform parameters of a query string (others are
    /// ignored); `Ok(None)` when there are none; a bad value is an error
    /// message naming it.
    pub fn parse(query: &str) -> Result<Option<Variant>, String> {
        let mut v = Variant {
            w: None,
            h: None,
            fit: Fit::Inside,
            fm: None,
            q: None,
        };
        let mut any = false;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "w" => v.w = Some(side("w", &value)?),
                "h" => v.h = Some(side("h", &value)?),
                "fit" => {
                    v.fit = match value.as_ref() {
                        "cover" => Fit::Cover,
                        "contain" => Fit::Contain,
                        "fill" => Fit::Fill,
                        "inside" => Fit::Inside,
                        _ => {
                            return Err(format!(
                                "fit must be cover, contain, fill or inside (got \"{value}\")"
                            ))
                        }
                    }
                }
                "fm" => {
                    v.fm = Some(match value.as_ref() {
                        "png" => Format::Png,
                        "jpeg" | "jpg" => Format::Jpeg,
                        "webp" => Format::Webp,
                        _ => return Err(format!("fm must be png, jpeg or webp (got \"{value}\")")),
                    })
                }
                "q" => {
                    v.q = Some(
                        value
                            .parse::<u8>()
                            .ok()
                            .filter(|q| (1..=100).contains(q))
                            .ok_or_else(|| {
                                format!("q must be a whole number from 1 to 100 (got \"{value}\")")
                            })?,
                    )
                }
                _ => continue,
            }
            any = true;
        }
        Ok(any.then_some(v))
    }

    /// The output format for an original of `content_type`.
    pub fn format(&self, content_type: &str) -> Format {
        self.fm
            .unwrap_or_else(|| Format::of_content_type(content_type))
    }

    /// A stable name for the variant of an original of `content_type`
    /// (its object name: equal requests share one stored variant).
    pub fn key(&self, content_type: &str) -> String {
        let fm = self.format(content_type);
        let fit = match self.fit {
            Fit::Cover => "cover",
            Fit::Contain => "contain",
            Fit::Fill => "fill",
            Fit::Inside => "inside",
        };
        let q = match fm {
            Format::Jpeg => self.q.unwrap_or(DEFAULT_QUALITY),
            _ => 0,
        };
        format!(
            "w{}-h{}-{fit}-q{q}.{}",
            self.w.unwrap_or(0),
            self.h.unwrap_or(0),
            fm.name()
        )
    }
}

fn side(name: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_SIDE).contains(n))
        .ok_or_else(|| {
            format!("{name} must be a whole number from 1 to {MAX_SIDE} (got \"{value}\")")
        })
}

/// Why a transform failed.
#[derive(Debug)]
pub enum RenderError {
    /// The stored bytes are not a decodable image (or too large to decode).
    BadImage(String),
    /// Encoding failed.
    Encode(String),
}

/// Decodes `original`, applies `v` and encodes the result.
pub fn render(original: &[u8], content_type: &str, v: &Variant) -> Result<Vec<u8>, RenderError> {
    let mut reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| RenderError::BadImage(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(60_000);
    limits.max_image_height = Some(60_000);
    // 50 Mpx of RGBA, plus room for the decoder's own buffers.
    limits.max_alloc = Some(MAX_PIXELS * 4 + 64 * 1024 * 1024);
    reader.limits(limits);
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| RenderError::BadImage(e.to_string()))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(RenderError::BadImage(format!(
            "the image is {w}x{h}, over {MAX_PIXELS} pixels"
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| RenderError::BadImage(e.to_string()))?;
    reader.limits(limits_for_decode());
    let img = reader
        .decode()
        .map_err(|e| RenderError::BadImage(e.to_string()))?;
    let out = resize(img, v);
    let fm = v.format(content_type);
    encode(out, fm, v.q.unwrap_or(DEFAULT_QUALITY))
}

fn limits_for_decode() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + 64 * 1024 * 1024);
    limits
}

/// The box `v` asks for, for an image of `w`x`h`: a missing side follows
/// the aspect ratio.
fn target(w: u32, h: u32, v: &Variant) -> (u32, u32) {
    let ratio = f64::from(w.max(1)) / f64::from(h.max(1));
    let clamp = |x: f64| (x.round() as u32).clamp(1, MAX_SIDE);
    match (v.w, v.h) {
        (Some(tw), Some(th)) => (tw, th),
        (Some(tw), None) => (tw, clamp(f64::from(tw) / ratio)),
        (None, Some(th)) => (clamp(f64::from(th) * ratio), th),
        (None, None) => (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE)),
    }
}

fn resize(img: DynamicImage, v: &Variant) -> DynamicImage {
    let (tw, th) = target(img.width(), img.height(), v);
    let filter = FilterType::Triangle;
    match (v.w.is_some() && v.h.is_some(), v.fit) {
        // One side given: the other follows the ratio; every fit agrees.
        (false, _) | (true, Fit::Fill) => img.resize_exact(tw, th, filter),
        (true, Fit::Inside) => img.resize(tw, th, filter),
        (true, Fit::Cover) => img.resize_to_fill(tw, th, filter),
        (true, Fit::Contain) => {
            let inner = img.resize(tw, th, filter).to_rgba8();
            let mut canvas = RgbaImage::from_pixel(tw, th, Rgba([255, 255, 255, 0]));
            let x = (tw - inner.width()) / 2;
            let y = (th - inner.height()) / 2;
            image::imageops::overlay(&mut canvas, &inner, i64::from(x), i64::from(y));
            DynamicImage::ImageRgba8(canvas)
        }
    }
}

fn encode(img: DynamicImage, fm: Format, q: u8) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    let result = match fm {
        Format::Png => img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png),
        Format::Webp => {
            let rgba = img.to_rgba8();
            DynamicImage::ImageRgba8(rgba).write_to(&mut Cursor::new(&mut out), ImageFormat::WebP)
        }
        Format::Jpeg => {
            // JPEG has no alpha: flatten onto white.
            let rgb = flatten(&img);
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q);
            rgb.write_with_encoder(encoder)
        }
    };
    result.map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out)
}

fn flatten(img: &DynamicImage) -> DynamicImage {
    if !img.color().has_alpha() {
        return DynamicImage::ImageRgb8(img.to_rgb8());
    }
    let rgba = img.to_rgba8();
    let rgb = image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let mix = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([mix(r), mix(g), mix(b)])
    });
    DynamicImage::ImageRgb8(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_bad_values_are_refused() {
        assert_eq!(Variant::parse("").unwrap_or(None), None);
        assert_eq!(Variant::parse("v=3&expires=1").unwrap_or(None), None);
        let v = Variant::parse("w=400&fm=jpeg&q=70").ok().flatten();
        assert_eq!(
            v.map(|v| (v.w, v.h, v.fm, v.q)),
            Some((Some(400), None, Some(Format::Jpeg), Some(70)))
        );
        for bad in ["w=0", "w=4001", "h=x", "fit=zoom", "fm=bmp", "q=0", "q=101"] {
            assert!(Variant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn equal_requests_share_a_key() {
        let a = Variant::parse("w=10&fm=png").ok().flatten();
        let b = Variant::parse("fm=png&w=10&fit=inside").ok().flatten();
        assert_eq!(a.map(|v| v.key("image/png")), b.map(|v| v.key("image/png")));
    }

    #[test]
    fn every_fit_gives_its_box() {
        let img = DynamicImage::ImageRgba8(RgbaImage::new(200, 100));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .ok();
        let size = |q: &str| {
            let v = Variant::parse(q).ok().flatten();
            let out = v.map(|v| render(&png, "image/png", &v));
            match out {
                Some(Ok(bytes)) => imagesize::blob_size(&bytes)
                    .map(|s| (s.width, s.height))
                    .ok(),
                _ => None,
            }
        };
        assert_eq!(size("w=100"), Some((100, 50)));
        assert_eq!(size("w=50&h=50&fit=inside"), Some((50, 25)));
        assert_eq!(size("w=50&h=50&fit=contain"), Some((50, 50)));
        assert_eq!(size("w=50&h=50&fit=cover"), Some((50, 50)));
        assert_eq!(size("w=50&h=60&fit=fill"), Some((50, 60)));
        assert_eq!(size("w=40&fm=jpeg&q=50"), Some((40, 20)));
        assert_eq!(size("w=40&fm=webp"), Some((40, 20)));
    }
}
