//! The quicklook: a downsampled RGBA picture of the class mosaic with a title (model, acquisition dates,
//! CRS), a legend (class colour swatches and names), and a scale bar, written as PNG. Nodata is
//! transparent; the background is opaque, so the two stay apart in any viewer. Text and shapes are drawn
//! with `embedded-graphics` (its ISO-8859-1 fonts, so class names such as "Lärche" render).

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use embedded_graphics::geometry::{Dimensions, OriginDimensions, Point, Size};
use embedded_graphics::mono_font::iso_8859_1::{FONT_10X20, FONT_7X13, FONT_9X15};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::primitives::{Primitive, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use embedded_graphics::{Drawable, Pixel};
use gdal::raster::{Buffer, ResampleAlg};
use gdal::{Dataset, DriverManager, Metadata};
use treesits_core::species::{SpeciesClass, CLASS_NODATA};
use treesits_core::Date;
use treesits_gdal::error::GdalCause;

/// The opaque background around the map; nodata inside the map is transparent instead.
pub const BACKGROUND: [u8; 4] = [246, 245, 240, 255];
/// Text, outlines, the dark half of the scale bar.
pub const INK: [u8; 4] = [33, 33, 33, 255];
const FRAME: [u8; 4] = [150, 150, 150, 255];
const TRANSPARENT: [u8; 4] = [0, 0, 0, 0];
const WHITE: [u8; 4] = [255, 255, 255, 255];
const TITLE_FONT: MonoFont = FONT_10X20;
const SUBTITLE_FONT: MonoFont = FONT_7X13;
const LEGEND_FONT: MonoFont = FONT_9X15;
const MARGIN: usize = 16;
const SWATCH: usize = 18;
const LINE: usize = 26;
const SCALE_BAR_H: usize = 8;

/// An RGBA picture in memory, also an `embedded-graphics` draw target (drawn pixels are opaque).
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 4]>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: [u8; 4]) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![fill; width * height],
        }
    }

    pub fn put(&mut self, x: usize, y: usize, c: [u8; 4]) {
        if x < self.width && y < self.height {
            self.pixels[y * self.width + x] = c;
        }
    }

    pub fn get(&self, x: usize, y: usize) -> [u8; 4] {
        self.pixels[y * self.width + x]
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, fill: [u8; 4], outline: Option<[u8; 4]>) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, fill);
            }
        }
        if let Some(c) = outline {
            // `embedded-graphics` strokes the outline; fills stay ours so a fill can be transparent.
            let _ = Rectangle::new(point(x, y), Size::new(w as u32, h as u32))
                .into_styled(PrimitiveStyle::with_stroke(rgb(c), 1))
                .draw(self);
        }
    }

    /// Draws `text` with its top-left corner at (`x`, `y`); returns its width in pixels.
    fn text(&mut self, text: &str, x: usize, y: usize, font: &MonoFont, c: [u8; 4]) -> usize {
        let t = Text::with_baseline(text, point(x, y), MonoTextStyle::new(font, rgb(c)), Baseline::Top);
        let _ = t.draw(self);
        t.bounding_box().size.width as usize
    }

    /// Writes the picture as a 4-band (RGBA) PNG through GDAL's PNG driver, `text` as its tEXt
    /// chunks (key, value); a failed write is an error ([`treesits_gdal::error::checked_write`]).
    pub fn write_png(&self, path: &Path, text: &[(&str, String)]) -> gdal::errors::Result<()> {
        treesits_gdal::error::checked_write(|| self.write_png_unchecked(path, text))
    }

    fn write_png_unchecked(&self, path: &Path, text: &[(&str, String)]) -> gdal::errors::Result<()> {
        let mem = DriverManager::get_driver_by_name("MEM")?;
        let mut ds = mem.create_with_band_type::<u8, _>("", self.width, self.height, 4)?;
        for (key, value) in text {
            ds.set_metadata_item(key, value, "")?;
        }
        for b in 0..4 {
            let v: Vec<u8> = self.pixels.iter().map(|p| p[b]).collect();
            let mut buf = Buffer::new((self.width, self.height), v);
            let mut band = ds.rasterband(b + 1)?;
            band.write((0, 0), (self.width, self.height), &mut buf)?;
            if b == 3 {
                band.set_color_interpretation(gdal::raster::ColorInterpretation::AlphaBand)?;
            }
        }
        let png = DriverManager::get_driver_by_name("PNG")?;
        let options = gdal::raster::RasterCreationOptions::from_iter(["WRITE_METADATA_AS_TEXT=YES"]);
        let out = ds.create_copy(&png, path, &options)?;
        out.close()
    }
}

fn point(x: usize, y: usize) -> Point {
    Point::new(x as i32, y as i32)
}

fn rgb(c: [u8; 4]) -> Rgb888 {
    Rgb888::new(c[0], c[1], c[2])
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }
}

impl embedded_graphics::draw_target::DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 {
                self.put(p.x as usize, p.y as usize, [c.r(), c.g(), c.b(), 255]);
            }
        }
        Ok(())
    }
}

/// Why a quicklook could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QuicklookError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: GdalCause },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: GdalCause },
}

/// What the quicklook says about the map besides its pixels.
#[derive(Debug, Clone)]
pub struct QuicklookLabels<'a> {
    pub model_id: &'a str,
    pub classes: &'a [SpeciesClass],
    /// The acquisitions' date range the map was made from.
    pub dates: (Date, Date),
}

/// The scale bar for a map whose pixels are `pixel_m` metres wide and that is `map_px` pixels wide:
/// a round length (1, 2 or 5 × 10ⁿ m) at most about a third of the map, its width in pixels, and
/// its label ("500 m", "2 km"). `None` when not even 1 m fits.
pub fn scale_bar(pixel_m: f64, map_px: usize) -> Option<(f64, usize, String)> {
    if !(pixel_m.is_finite() && pixel_m > 0.0) {
        return None;
    }
    let max_m = pixel_m * (map_px as f64 / 3.0).max(24.0);
    let mut best = None;
    let mut power = 1.0;
    while power <= max_m {
        for f in [1.0, 2.0, 5.0] {
            if f * power <= max_m {
                best = Some(f * power);
            }
        }
        power *= 10.0;
    }
    let metres = best?;
    let label = if metres >= 1000.0 {
        format!("{} km", metres / 1000.0)
    } else {
        format!("{metres} m")
    };
    Some((metres, (metres / pixel_m).round() as usize, label))
}

/// The CRS's name from its WKT ("ETRS89 / LAEA Europe"), with its EPSG code when it has one, and the
/// size of its linear unit in metres (`None` for a geographic CRS).
fn crs_label(ds: &Dataset) -> (String, Option<f64>) {
    let Ok(srs) = ds.spatial_ref() else {
        return ("unknown CRS".into(), None);
    };
    let name = srs.name().unwrap_or_else(|| "unnamed CRS".into());
    let name = match (srs.auth_name(), srs.auth_code()) {
        (Some(auth), Ok(code)) => format!("{name} ({auth}:{code})"),
        _ => name,
    };
    let unit = (srs.is_projected()).then(|| srs.linear_units());
    (name, unit)
}

/// A rendered quicklook: the picture, and the words it shows (also written as the PNG's text chunks).
#[derive(Debug, Clone)]
pub struct Quicklook {
    pub canvas: Canvas,
    /// "Tree species, model …".
    pub title: String,
    /// "acquisitions … to … · CRS name (EPSG:…)".
    pub subtitle: String,
    /// The scale bar's label ("200 m"), if the CRS has metres.
    pub scale: Option<String>,
}

/// Draws the quicklook of a class raster: the map scaled so its longer side is about `size` pixels
/// (nearest neighbour, from the raster's overviews), classes in their colours, nodata transparent,
/// a title band (model, dates, CRS), a scale bar under the map and the legend on the right.
pub fn render(
    class_raster: &Path,
    labels: &QuicklookLabels,
    size: usize,
) -> Result<Quicklook, QuicklookError> {
    let read = |e| QuicklookError::Read {
        path: class_raster.to_path_buf(),
        source: GdalCause::new(e),
    };
    let ds = Dataset::open(class_raster).map_err(read)?;
    let (w, h) = ds.raster_size();
    let longest = w.max(h).max(1);
    let size = size.max(64);
    let (mw, mh) = if longest > size {
        (
            (w * size).div_ceil(longest).max(1),
            (h * size).div_ceil(longest).max(1),
        )
    } else {
        // Small mosaics are enlarged by a whole factor, so pixels stay square and crisp.
        let f = (size / longest).max(1);
        (w * f, h * f)
    };
    let band = ds.rasterband(1).map_err(read)?;
    let values = band
        .read_as::<u8>((0, 0), (w, h), (mw, mh), Some(ResampleAlg::NearestNeighbour))
        .map_err(read)?
        .into_shape_and_vec()
        .1;
    let mut colour = [TRANSPARENT; 256];
    for c in labels.classes {
        colour[usize::from(c.code)] = [c.colour[0], c.colour[1], c.colour[2], 255];
    }
    colour[usize::from(CLASS_NODATA)] = TRANSPARENT;

    let (crs, unit_m) = crs_label(&ds);
    let bar = match (ds.geo_transform(), unit_m) {
        (Ok(gt), Some(unit)) => scale_bar(gt[1].abs() * unit * w as f64 / mw as f64, mw),
        _ => None,
    };
    let title = format!("Tree species, model {}", labels.model_id);
    let subtitle = format!(
        "acquisitions {} to {} \u{b7} {crs}",
        labels.dates.0, labels.dates.1
    );
    let char_w =
        |f: &MonoFont, s: &str| s.chars().count() * (f.character_size.width + f.character_spacing) as usize;
    let title_h =
        TITLE_FONT.character_size.height as usize + 4 + SUBTITLE_FONT.character_size.height as usize;
    let name_w = labels
        .classes
        .iter()
        .map(|c| char_w(&LEGEND_FONT, &c.name))
        .chain([char_w(&LEGEND_FONT, "no data")])
        .max()
        .unwrap_or(0);
    let legend_w = MARGIN + SWATCH + 10 + name_w + MARGIN;
    let legend_h = (labels.classes.len() + 1) * LINE;
    let bar_h = 10 + SCALE_BAR_H + 4 + SUBTITLE_FONT.character_size.height as usize;
    let map_top = MARGIN + title_h + MARGIN;
    let width = (MARGIN + mw + 2 + legend_w)
        .max(MARGIN + char_w(&TITLE_FONT, &title) + MARGIN)
        .max(MARGIN + char_w(&SUBTITLE_FONT, &subtitle) + MARGIN);
    let height = map_top + (mh + 2 + bar_h).max(legend_h) + MARGIN;
    let mut c = Canvas::new(width, height, BACKGROUND);

    // The title band.
    c.text(&title, MARGIN, MARGIN, &TITLE_FONT, INK);
    let sub_y = MARGIN + TITLE_FONT.character_size.height as usize + 4;
    c.text(&subtitle, MARGIN, sub_y, &SUBTITLE_FONT, INK);
    // The map, framed.
    let (x0, y0) = (MARGIN + 1, map_top + 1);
    for y in 0..mh {
        for x in 0..mw {
            c.put(x0 + x, y0 + y, colour[usize::from(values[y * mw + x])]);
        }
    }
    let _ = Rectangle::new(point(MARGIN, map_top), Size::new(mw as u32 + 2, mh as u32 + 2))
        .into_styled(PrimitiveStyle::with_stroke(rgb(FRAME), 1))
        .draw(&mut c);
    // The scale bar: two halves, dark and white, and its length.
    if let Some((_, px, label)) = &bar {
        let px = *px;
        let by = map_top + mh + 2 + 10;
        let half = px / 2;
        c.rect(x0, by, half, SCALE_BAR_H, INK, None);
        c.rect(x0 + half, by, px - half, SCALE_BAR_H, WHITE, None);
        let _ = Rectangle::new(point(x0, by), Size::new(px as u32, SCALE_BAR_H as u32))
            .into_styled(PrimitiveStyle::with_stroke(rgb(INK), 1))
            .draw(&mut c);
        c.text("0", x0, by + SCALE_BAR_H + 4, &SUBTITLE_FONT, INK);
        let lw = char_w(&SUBTITLE_FONT, label);
        c.text(
            label,
            (x0 + px).saturating_sub(lw / 2),
            by + SCALE_BAR_H + 4,
            &SUBTITLE_FONT,
            INK,
        );
    }
    // The legend, its nodata swatch as transparent as the map's nodata.
    let lx = MARGIN + mw + 2 + MARGIN;
    let mut y = map_top;
    let entries = labels
        .classes
        .iter()
        .map(|k| ([k.colour[0], k.colour[1], k.colour[2], 255], k.name.as_str()))
        .chain([(TRANSPARENT, "no data")]);
    for (fill, name) in entries {
        c.rect(lx, y, SWATCH, SWATCH, fill, Some(INK));
        let ty = y + (SWATCH - LEGEND_FONT.character_size.height as usize) / 2;
        c.text(name, lx + SWATCH + 10, ty, &LEGEND_FONT, INK);
        y += LINE;
    }
    Ok(Quicklook {
        canvas: c,
        title,
        subtitle,
        scale: bar.map(|b| b.2),
    })
}

/// Renders and writes `quicklook.png`.
pub fn write_quicklook(
    class_raster: &Path,
    labels: &QuicklookLabels,
    size: usize,
    out: &Path,
) -> Result<(), QuicklookError> {
    let q = render(class_raster, labels, size)?;
    let mut text = vec![("Title", q.title.clone()), ("Description", q.subtitle.clone())];
    if let Some(scale) = &q.scale {
        text.push(("Comment", format!("scale bar {scale}")));
    }
    q.canvas.write_png(out, &text).map_err(|e| QuicklookError::Write {
        path: out.to_path_buf(),
        source: GdalCause::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_bar_is_a_round_length_of_at_most_a_third_of_the_map() {
        // 30 m pixels, 300 px map: at most 3 km → 2 km, 67 px.
        assert_eq!(scale_bar(30.0, 300), Some((2000.0, 67, "2 km".into())));
        // 10 m pixels, 256 px: at most 853 m → 500 m, 50 px.
        assert_eq!(scale_bar(10.0, 256), Some((500.0, 50, "500 m".into())));
        assert_eq!(scale_bar(1000.0, 1024), Some((200_000.0, 200, "200 km".into())));
        assert_eq!(scale_bar(f64::NAN, 100), None);
        assert_eq!(scale_bar(0.01, 30), None);
    }

    #[test]
    fn drawn_text_is_opaque_ink_and_latin_1_names_render() {
        let mut c = Canvas::new(120, 30, TRANSPARENT);
        let w = c.text("Lärche", 0, 0, &LEGEND_FONT, INK);
        assert_eq!(w, 6 * 9);
        let ink = c.pixels.iter().filter(|p| **p == INK).count();
        assert!(ink > 40, "{ink}");
        // The second glyph differs from a plain "a" (its diaeresis), so Latin-1 is not replaced by '?'
        // or dropped.
        let mut plain = Canvas::new(120, 30, TRANSPARENT);
        plain.text("Larche", 0, 0, &LEGEND_FONT, INK);
        let glyph = |c: &Canvas| -> Vec<bool> {
            (0..15)
                .flat_map(|y| (9..18).map(move |x| (x, y)))
                .map(|(x, y)| c.get(x, y) == INK)
                .collect()
        };
        let (umlaut, a) = (glyph(&c), glyph(&plain));
        assert_ne!(umlaut, a, "ä drawn as a");
        // It is an "a" with marks added above it: every pixel of the plain glyph is in it too.
        assert!(a.iter().zip(&umlaut).all(|(p, u)| !p || *u));
        let mut q = Canvas::new(120, 30, TRANSPARENT);
        q.text("L?rche", 0, 0, &LEGEND_FONT, INK);
        assert_ne!(umlaut, glyph(&q), "ä drawn as the replacement character");
    }
}
