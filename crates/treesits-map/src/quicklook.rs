//! The quicklook: a downsampled RGB picture of the class mosaic with a legend (class colour swatches and
//! names), written as PNG.

use std::path::{Path, PathBuf};

use gdal::raster::{Buffer, ResampleAlg};
use gdal::{Dataset, DriverManager};
use treesits_core::species::{SpeciesClass, CLASS_NODATA};
use treesits_gdal::error::GdalCause;

use crate::bitmap_font::{draw_text, text_width, GLYPH_H};

const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [40, 40, 40];
const FRAME: [u8; 3] = [150, 150, 150];
/// Legend text scale (glyphs 10 × 18 pixels).
const SCALE: usize = 2;
const MARGIN: usize = 16;
const SWATCH: usize = 18;
const LINE: usize = 26;

/// An RGB picture in memory.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 3]>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![fill; width * height],
        }
    }

    pub fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            self.pixels[y * self.width + x] = c;
        }
    }

    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        self.pixels[y * self.width + x]
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, c);
            }
        }
    }

    fn outline(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for xx in x..x + w {
            self.put(xx, y, c);
            self.put(xx, y + h - 1, c);
        }
        for yy in y..y + h {
            self.put(x, yy, c);
            self.put(x + w - 1, yy, c);
        }
    }

    /// Writes the picture as PNG through GDAL's PNG driver; a failed write is an error
    /// ([`treesits_gdal::error::checked_write`]).
    pub fn write_png(&self, path: &Path) -> gdal::errors::Result<()> {
        treesits_gdal::error::checked_write(|| self.write_png_unchecked(path))
    }

    fn write_png_unchecked(&self, path: &Path) -> gdal::errors::Result<()> {
        let mem = DriverManager::get_driver_by_name("MEM")?;
        let ds = mem.create_with_band_type::<u8, _>("", self.width, self.height, 3)?;
        for b in 0..3 {
            let v: Vec<u8> = self.pixels.iter().map(|p| p[b]).collect();
            let mut buf = Buffer::new((self.width, self.height), v);
            ds.rasterband(b + 1)?
                .write((0, 0), (self.width, self.height), &mut buf)?;
        }
        let png = DriverManager::get_driver_by_name("PNG")?;
        let out = ds.create_copy(&png, path, &Default::default())?;
        out.close()
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

/// Draws the quicklook of a class raster: the map scaled so its longer side is about `size` pixels
/// (nearest neighbour, from the raster's overviews), classes in their colours, nodata white, and a
/// legend on the right.
pub fn render(
    class_raster: &Path,
    classes: &[SpeciesClass],
    title: &str,
    size: usize,
) -> Result<Canvas, QuicklookError> {
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
    let mut colour = [WHITE; 256];
    for c in classes {
        colour[usize::from(c.code)] = c.colour;
    }
    colour[usize::from(CLASS_NODATA)] = WHITE;

    let text_h = GLYPH_H * SCALE;
    let name_w = classes
        .iter()
        .map(|c| text_width(&c.name, SCALE))
        .chain([text_width("no data", SCALE), text_width(title, SCALE)])
        .max()
        .unwrap_or(0);
    let legend_w = MARGIN + SWATCH + 10 + name_w + MARGIN;
    let legend_h = MARGIN + text_h + 12 + (classes.len() + 1) * LINE + MARGIN;
    let width = MARGIN + mw + 2 + legend_w;
    let height = (MARGIN + mh + 2 + MARGIN).max(legend_h);
    let mut c = Canvas::new(width, height, WHITE);
    // The map, framed.
    let (x0, y0) = (MARGIN + 1, MARGIN + 1);
    for y in 0..mh {
        for x in 0..mw {
            c.put(x0 + x, y0 + y, colour[usize::from(values[y * mw + x])]);
        }
    }
    c.outline(MARGIN, MARGIN, mw + 2, mh + 2, FRAME);
    // The legend.
    let lx = MARGIN + mw + 2 + MARGIN;
    let mut y = MARGIN;
    draw_text(title, lx, y, SCALE, |px, py| c.put(px, py, INK));
    y += text_h + 12;
    let entries = classes
        .iter()
        .map(|k| (k.colour, k.name.as_str()))
        .chain([(WHITE, "no data")]);
    for (rgb, name) in entries {
        c.rect(lx, y, SWATCH, SWATCH, rgb);
        c.outline(lx, y, SWATCH, SWATCH, INK);
        // Glyph row 6 is the baseline: put it at the swatch's bottom edge.
        let ty = (y + SWATCH).saturating_sub(7 * SCALE);
        draw_text(name, lx + SWATCH + 10, ty, SCALE, |px, py| c.put(px, py, INK));
        y += LINE;
    }
    Ok(c)
}

/// Renders and writes `quicklook.png`.
pub fn write_quicklook(
    class_raster: &Path,
    classes: &[SpeciesClass],
    model_id: &str,
    size: usize,
    out: &Path,
) -> Result<(), QuicklookError> {
    let title = format!("model {model_id}");
    let canvas = render(class_raster, classes, &title, size)?;
    canvas.write_png(out).map_err(|e| QuicklookError::Write {
        path: out.to_path_buf(),
        source: GdalCause::new(e),
    })
}
