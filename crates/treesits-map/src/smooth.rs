//! Spatial smoothing of class probabilities (`mosaic --smooth bayes`), across tile edges without
//! seams.
//!
//! The smoother is Bayesian, in the manner of the `sits` R package (`sits_smooth`): for each pixel
//! and class, the logit `x = ln(p / (1 − p))` of the class's probability is a noisy measurement
//! (variance `σ²`, the *smoothness*) of an unknown value whose prior is the neighbourhood's: the
//! mean `m` and variance `s²` of the class's logits over the highest `neighbour_fraction` of the
//! valid pixels in a `window × window` square around the pixel (the pixel included). The posterior
//! mean `(s²·x + σ²·m) / (s² + σ²)` is the smoothed logit. A pixel's class becomes the class with
//! the highest smoothed logit; its smoothed probabilities are the logistic of the smoothed logits,
//! normalised to sum to 1. Nodata pixels stay nodata and are no one's neighbour.
//!
//! The other method, [`MajorityFilter`] (`--smooth majority`), works on the classes alone: the most
//! frequent class of each window, then a sieve merging regions below a minimum mapping unit.
//!
//! No seams: smoothing runs after every tile is written and reads each tile's pixels together with
//! a halo of its neighbours' ([`Smoothing::halo`]), through a VRT over all tiles' per-class
//! probability (or class) files. The smoothed products are written beside the originals and replace them only
//! when every tile is done, so every tile is smoothed from unsmoothed neighbours: the smoothed
//! tiles equal the smoothing of the whole area at once, pixel for pixel.
//!
//! Memory: a worker holds one band of [`TILE_BLOCK`] rows of its tile plus the halo, for every
//! class (as 16-bit values and 32-bit logits); tiles run in parallel on the rayon pool, each worker
//! with its own GDAL handles.

use std::path::{Path, PathBuf};

use gdal::raster::Buffer;
use gdal::{Dataset, Metadata};
use rayon::prelude::*;
use treesits_core::prediction::{scale_prob, Uncertainty, PROB_NODATA};
use treesits_core::species::{SpeciesClass, CLASS_NODATA};
use treesits_core::{TileGrid, TileId};
use treesits_gdal::error::{GdalCause, WriteCheck, WriteFailed};
use treesits_gdal::{GeoTiffSpec, TiffLayout};

use crate::mosaic::{tile_file, TILE_BLOCK};
use crate::style;
use crate::vrt::{self, VrtBand, VrtTiles};

/// Dataset metadata key recording the smoothing a product went through.
pub const SMOOTHING_METADATA_KEY: &str = "TREESITS_SMOOTHING";

/// Smallest and largest window, as `sits` allows.
pub const WINDOW_RANGE: std::ops::RangeInclusive<usize> = 3..=21;

/// How to smooth: the parameters of the Bayesian smoother.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BayesSmoothing {
    /// Side of the square neighbourhood, pixels (odd, 3..=21).
    pub window: usize,
    /// Share of the valid neighbours, those with the highest logits of a class, that make that
    /// class's prior (0 < f ≤ 1).
    pub neighbour_fraction: f64,
    /// Variance of a pixel's logits (σ²): the larger, the more the neighbourhood counts.
    pub smoothness: f64,
}

impl Default for BayesSmoothing {
    /// The defaults of `sits_smooth` (sits 1.4): a 7 × 7 window, half the neighbours, σ² = 10.
    fn default() -> Self {
        BayesSmoothing {
            window: 7,
            neighbour_fraction: 0.5,
            smoothness: 10.0,
        }
    }
}

/// A smoothing of the per-tile products.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// Bayesian smoothing of the per-class probabilities (rewrites every product).
    Bayes(BayesSmoothing),
    /// Majority filter and sieve on the classes alone (rewrites the class files only).
    Majority(MajorityFilter),
}

impl Smoothing {
    pub fn check(&self) -> Result<(), SmoothError> {
        match self {
            Smoothing::Bayes(b) => b.check(),
            Smoothing::Majority(m) => m.check(),
        }
    }

    /// Pixels of the neighbour tiles a tile's smoothing reads on each side.
    pub fn halo(&self) -> usize {
        match self {
            Smoothing::Bayes(b) => b.halo(),
            Smoothing::Majority(m) => m.halo(),
        }
    }

    /// What the products record in [`SMOOTHING_METADATA_KEY`].
    pub fn describe(&self) -> String {
        match self {
            Smoothing::Bayes(b) => b.describe(),
            Smoothing::Majority(m) => m.describe(),
        }
    }
}

/// A majority filter, then a sieve, on the class raster alone (as FORCE users post-process maps).
///
/// - Majority: a mapped pixel takes the class most frequent among the mapped pixels of the
///   `window × window` square around it (itself included); in a tie its own class stays if it is
///   among the most frequent, else the lowest class code wins. A window of 1 leaves the classes.
/// - Sieve (`mmu` > 1): every region of one class (8-connected) with fewer than `mmu` pixels takes
///   the class most frequent among the mapped pixels touching it (ties: the lowest code), in one
///   pass over the majority-filtered classes; a region touching no mapped pixel stays.
///
/// Both are exact across tiles with a halo of `window / 2 + mmu` pixels: a region holding a tile's
/// pixel and reaching beyond the halo has more than `mmu` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MajorityFilter {
    /// Side of the square neighbourhood, pixels (odd, 1..=21).
    pub window: usize,
    /// Minimum mapping unit, pixels: smaller regions are merged into their surroundings; 0 or 1:
    /// no sieve.
    pub mmu: usize,
}

/// Largest minimum mapping unit: its halo is read from the neighbour tiles.
pub const MAX_MMU: usize = 10_000;

impl MajorityFilter {
    pub fn check(&self) -> Result<(), SmoothError> {
        if self.window.is_multiple_of(2) || !(1..=*WINDOW_RANGE.end()).contains(&self.window) {
            return Err(SmoothError::MajorityWindow(self.window));
        }
        if self.mmu > MAX_MMU {
            return Err(SmoothError::Mmu(self.mmu));
        }
        Ok(())
    }

    pub fn halo(&self) -> usize {
        self.window / 2 + self.sieve_halo()
    }

    fn sieve_halo(&self) -> usize {
        if self.mmu > 1 {
            self.mmu
        } else {
            0
        }
    }

    pub fn describe(&self) -> String {
        format!("majority window={} mmu={}", self.window, self.mmu)
    }

    /// Filters the interior of `block`: every pixel at least [`MajorityFilter::halo`] pixels from
    /// its edges.
    pub fn filter(&self, block: &ClassBlock) -> ClassBlock {
        let hw = self.window / 2;
        let (w, h) = (block.width, block.height);
        let halo = self.halo();
        assert!(w > 2 * halo && h > 2 * halo, "a block needs more than its halo");
        assert_eq!(block.values.len(), w * h);
        let v = &block.values;
        // Majority over the block less the window's half.
        let (mw, mh) = (w - 2 * hw, h - 2 * hw);
        let mut maj = vec![CLASS_NODATA; mw * mh];
        let mut counts = [0u32; 256];
        for r in 0..mh {
            for c in 0..mw {
                let own = v[(r + hw) * w + c + hw];
                if own == CLASS_NODATA {
                    continue;
                }
                counts.fill(0);
                for y in r..=r + 2 * hw {
                    for &x in &v[y * w + c..=y * w + c + 2 * hw] {
                        counts[usize::from(x)] += 1;
                    }
                }
                counts[usize::from(CLASS_NODATA)] = 0;
                let mut best = own;
                for (k, &n) in counts.iter().enumerate() {
                    if n > counts[usize::from(best)] {
                        best = k as u8;
                    }
                }
                maj[r * mw + c] = best;
            }
        }
        let m = self.sieve_halo();
        let out = if m == 0 {
            maj
        } else {
            sieve(&maj, mw, mh, self.mmu)
        };
        let (ow, oh) = (mw - 2 * m, mh - 2 * m);
        let mut values = Vec::with_capacity(ow * oh);
        for r in m..m + oh {
            values.extend_from_slice(&out[r * mw + m..r * mw + m + ow]);
        }
        ClassBlock {
            width: ow,
            height: oh,
            values,
        }
    }
}

/// Regions (8-connected, one class) of fewer than `mmu` pixels take the class most frequent among
/// the mapped pixels touching them (ties: the lowest code); one pass, from the classes given.
fn sieve(v: &[u8], w: usize, h: usize, mmu: usize) -> Vec<u8> {
    let mut out = v.to_vec();
    let mut seen = vec![false; w * h];
    let mut region = Vec::new();
    let mut stack = Vec::new();
    let mut counts = [0u32; 256];
    let around = |i: usize| {
        let (r, c) = ((i / w) as isize, (i % w) as isize);
        (-1isize..=1)
            .flat_map(move |dy| (-1isize..=1).map(move |dx| (r + dy, c + dx)))
            .filter(move |&(y, x)| (y, x) != (r, c) && y >= 0 && x >= 0 && y < h as isize && x < w as isize)
            .map(move |(y, x)| y as usize * w + x as usize)
    };
    for start in 0..w * h {
        if seen[start] || v[start] == CLASS_NODATA {
            continue;
        }
        let class = v[start];
        region.clear();
        stack.push(start);
        seen[start] = true;
        while let Some(i) = stack.pop() {
            region.push(i);
            for j in around(i) {
                if !seen[j] && v[j] == class {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if region.len() >= mmu {
            continue;
        }
        counts.fill(0);
        for &i in &region {
            for j in around(i) {
                if v[j] != class && v[j] != CLASS_NODATA {
                    counts[usize::from(v[j])] += 1;
                }
            }
        }
        let (mut best, mut most) = (class, 0);
        for (k, &n) in counts.iter().enumerate() {
            if n > most {
                (best, most) = (k as u8, n);
            }
        }
        for &i in &region {
            out[i] = best;
        }
    }
    out
}

/// Class codes of a rectangle of pixels, row-major; [`CLASS_NODATA`] is nodata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassBlock {
    pub width: usize,
    pub height: usize,
    pub values: Vec<u8>,
}

/// Why smoothing could not be done. Every message names the tile or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SmoothError {
    #[error(
        "--smooth bayes needs per-class probabilities, which tile {tile} lacks: predict with \
         --probabilities (or map without --smooth)"
    )]
    NoProbabilities { tile: TileId },
    #[error("--smooth-window {0}: give an odd number of pixels from 3 to 21")]
    Window(usize),
    #[error("--smooth-window {0}: give an odd number of pixels from 1 to 21 (1: sieve only)")]
    MajorityWindow(usize),
    #[error("--mmu {0}: give at most {MAX_MMU} pixels")]
    Mmu(usize),
    #[error("--neighbour-fraction {0}: give a share above 0 and at most 1")]
    Fraction(f64),
    #[error("--smoothness {0}: give a variance above 0")]
    Smoothness(f64),
    #[error("smoothing {file}: {source}")]
    Gdal { file: String, source: GdalCause },
    #[error("smoothing {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing {file}: {source}; nothing was committed (free space and run again)")]
    WriteFailed { file: String, source: WriteFailed },
}

fn gdal_err(file: impl Into<String>) -> impl FnOnce(gdal::errors::GdalError) -> SmoothError {
    let file = file.into();
    move |e| SmoothError::Gdal {
        file,
        source: GdalCause::new(e),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SmoothError + '_ {
    move |source| SmoothError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BayesSmoothing {
    /// Checks the parameters (the ranges `sits` documents, except smoothness, which needs only be
    /// positive).
    pub fn check(&self) -> Result<(), SmoothError> {
        if self.window.is_multiple_of(2) || !WINDOW_RANGE.contains(&self.window) {
            return Err(SmoothError::Window(self.window));
        }
        if !(self.neighbour_fraction > 0.0 && self.neighbour_fraction <= 1.0) {
            return Err(SmoothError::Fraction(self.neighbour_fraction));
        }
        if !(self.smoothness > 0.0 && self.smoothness.is_finite()) {
            return Err(SmoothError::Smoothness(self.smoothness));
        }
        Ok(())
    }

    /// Pixels of neighbourhood on each side of a pixel.
    pub fn halo(&self) -> usize {
        self.window / 2
    }

    /// What the products record in [`SMOOTHING_METADATA_KEY`].
    pub fn describe(&self) -> String {
        format!(
            "bayes window={} neighbour_fraction={} smoothness={}",
            self.window, self.neighbour_fraction, self.smoothness
        )
    }

    /// Smooths the interior of `block`: every pixel at least [`BayesSmoothing::halo`] pixels from
    /// its edges. The result has `(width − 2·halo) × (height − 2·halo)` pixels.
    pub fn smooth(&self, block: &ProbabilityBlock) -> SmoothedBlock {
        let h = self.halo();
        let (w, ht, k) = (block.width, block.height, block.classes);
        assert!(w > 2 * h && ht > 2 * h, "a block needs more than its halo");
        assert_eq!(block.values.len(), w * ht * k);
        let n = w * ht;
        // Logits, band-sequential like the block; NaN where the pixel is nodata. Probabilities come
        // in steps of 1/10000, so a table of the 10001 logits replaces a logarithm per value.
        let table: Vec<f32> = (0..=10_000u16).map(logit).collect();
        let logits: Vec<f32> = (0..k * n)
            .map(|i| {
                let pixel = i % n;
                if block.values[pixel] == PROB_NODATA {
                    f32::NAN
                } else {
                    table[usize::from(block.values[i].min(10_000))]
                }
            })
            .collect();
        let valid: Vec<bool> = (0..n).map(|i| block.values[i] != PROB_NODATA).collect();
        let (ow, oh) = (w - 2 * h, ht - 2 * h);
        let mut best = vec![None; ow * oh];
        let mut probabilities = vec![f32::NAN; ow * oh * k];
        let sigma2 = self.smoothness as f32;
        let mut neighbours: Vec<f32> = Vec::with_capacity(self.window * self.window);
        let mut around: Vec<usize> = Vec::with_capacity(self.window * self.window);
        let mut posterior = vec![0f32; k];
        for r in 0..oh {
            for c in 0..ow {
                let (br, bc) = (r + h, c + h);
                if !valid[br * w + bc] {
                    continue;
                }
                around.clear();
                around.extend(
                    (br - h..=br + h)
                        .flat_map(|y| (bc - h..=bc + h).map(move |x| y * w + x))
                        .filter(|&i| valid[i]),
                );
                let count = around.len();
                let take = ((self.neighbour_fraction * count as f64).ceil() as usize).clamp(1, count);
                for (b, post) in posterior.iter_mut().enumerate() {
                    let band = &logits[b * n..(b + 1) * n];
                    neighbours.clear();
                    neighbours.extend(around.iter().map(|&i| band[i]));
                    // The `take` highest logits, sorted so the sums are the same whatever the
                    // order the neighbours came in.
                    if take < count {
                        neighbours.select_nth_unstable_by(take - 1, |a, b| b.total_cmp(a));
                    }
                    let top = &mut neighbours[..take];
                    top.sort_unstable_by(|a, b| b.total_cmp(a));
                    let top = &*top;
                    let mean = top.iter().sum::<f32>() / take as f32;
                    let var = top.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / take as f32;
                    let x = band[br * w + bc];
                    *post = (var * x + sigma2 * mean) / (var + sigma2);
                }
                let mut arg = 0;
                for (b, &v) in posterior.iter().enumerate() {
                    if v > posterior[arg] {
                        arg = b;
                    }
                }
                let o = r * ow + c;
                best[o] = Some(arg);
                let out = &mut probabilities[o * k..(o + 1) * k];
                for (dst, &v) in out.iter_mut().zip(&posterior) {
                    *dst = 1.0 / (1.0 + (-v).exp());
                }
                let sum: f32 = out.iter().sum();
                for v in out.iter_mut() {
                    *v /= sum;
                }
            }
        }
        SmoothedBlock {
            width: ow,
            height: oh,
            classes: k,
            best,
            probabilities,
        }
    }
}

/// Probabilities below this (and above 1 minus it) are taken as it: the logit of 0 is −∞.
const PROB_FLOOR: f32 = 1e-4;

fn logit(v: u16) -> f32 {
    let p = (f32::from(v) / 10_000.0).clamp(PROB_FLOOR, 1.0 - PROB_FLOOR);
    (p / (1.0 - p)).ln()
}

/// Per-class probabilities × 10000 of a rectangle of pixels, band-sequential (class `b`'s value at
/// (row, col) is `values[(b · height + row) · width + col]`); [`PROB_NODATA`] in the first band
/// marks a nodata pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityBlock {
    pub width: usize,
    pub height: usize,
    pub classes: usize,
    pub values: Vec<u16>,
}

/// The smoothed interior of a [`ProbabilityBlock`], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothedBlock {
    pub width: usize,
    pub height: usize,
    pub classes: usize,
    /// Index (in the class table) of each pixel's most probable class; `None`: nodata.
    pub best: Vec<Option<usize>>,
    /// Each pixel's smoothed probabilities (summing to 1), `classes` per pixel; NaN for nodata.
    pub probabilities: Vec<f32>,
}

impl SmoothedBlock {
    /// The pixel's smoothed probabilities, `None` for nodata.
    pub fn pixel(&self, i: usize) -> Option<&[f32]> {
        self.best[i].map(|_| &self.probabilities[i * self.classes..(i + 1) * self.classes])
    }
}

/// The products of one tile, as they are before and after smoothing.
const PRODUCTS: [&str; 4] = ["class", "prob", "probabilities", "uncertainty"];

fn smoothed_name(tile: TileId, product: &str) -> String {
    format!("{tile}_{product}.smoothing.tif")
}

/// Smooths the per-tile products of `tiles` in `dir`, replacing them once every tile is smoothed:
/// with [`Smoothing::Bayes`] the class, top probability, per-class probabilities and, when present,
/// uncertainty; with [`Smoothing::Majority`] the class files.
pub fn smooth_tiles(
    dir: &Path,
    grid: &TileGrid,
    classes: &[SpeciesClass],
    tiles: &[TileId],
    params: &Smoothing,
) -> Result<(), SmoothError> {
    params.check()?;
    let input = match params {
        Smoothing::Bayes(_) => "probabilities",
        Smoothing::Majority(_) => "class",
    };
    // Every tile has its class file; only bayes needs more.
    if let Some(&tile) = tiles
        .iter()
        .find(|t| !dir.join(tile_file(**t, input)).exists())
        .filter(|_| matches!(params, Smoothing::Bayes(_)))
    {
        return Err(SmoothError::NoProbabilities { tile });
    }
    let started = std::time::Instant::now();
    let vrt_tiles = VrtTiles {
        grid,
        tiles: tiles.iter().map(|&t| (t, tile_file(t, input))).collect(),
        block: (TILE_BLOCK, TILE_BLOCK),
    };
    let bands: Vec<VrtBand> = match params {
        Smoothing::Bayes(_) => (1..=classes.len())
            .map(|b| VrtBand {
                data_type: "UInt16",
                nodata: f64::from(PROB_NODATA),
                description: classes[b - 1].name.clone(),
                source_band: b,
                classes: None,
                // Read raw (stored × 10000), as the smoother works on the stored values.
                scale_offset: None,
            })
            .collect(),
        Smoothing::Majority(_) => vec![VrtBand {
            data_type: "Byte",
            nodata: f64::from(CLASS_NODATA),
            description: "class".into(),
            source_band: 1,
            classes: None,
            scale_offset: None,
        }],
    };
    let vrt_path = dir.join("smoothing_input.vrt");
    std::fs::write(&vrt_path, vrt::mosaic_vrt(&vrt_tiles, &bands, &[])).map_err(io_err(&vrt_path))?;
    let origin = (
        tiles.iter().map(|t| t.x).min().unwrap_or(0),
        tiles.iter().map(|t| t.y).min().unwrap_or(0),
    );
    let job = TileJob {
        dir,
        vrt: &vrt_path,
        grid,
        classes,
        origin,
        params,
    };
    tiles.par_iter().try_for_each(|&tile| {
        let check = WriteCheck::start();
        job.smooth(tile)?;
        check.finish().map_err(|source| SmoothError::WriteFailed {
            file: format!("the smoothed files of tile {tile}"),
            source,
        })
    })?;
    std::fs::remove_file(&vrt_path).map_err(io_err(&vrt_path))?;
    for &tile in tiles {
        for product in PRODUCTS {
            let from = dir.join(smoothed_name(tile, product));
            if !from.exists() {
                continue;
            }
            let to = dir.join(tile_file(tile, product));
            std::fs::rename(&from, &to).map_err(io_err(&from))?;
            let (from_aux, to_aux) = (aux(&from), aux(&to));
            if from_aux.exists() {
                std::fs::rename(&from_aux, &to_aux).map_err(io_err(&from_aux))?;
            } else if to_aux.exists() {
                std::fs::remove_file(&to_aux).map_err(io_err(&to_aux))?;
            }
        }
    }
    log::info!(
        "{} tiles smoothed ({}) in {:.1} s",
        tiles.len(),
        params.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn aux(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".aux.xml");
    PathBuf::from(s)
}

/// What every tile's smoothing shares.
struct TileJob<'a> {
    dir: &'a Path,
    vrt: &'a Path,
    grid: &'a TileGrid,
    classes: &'a [SpeciesClass],
    /// The tile at the VRT's top left corner.
    origin: (i32, i32),
    params: &'a Smoothing,
}

/// A tile product being rewritten: its file name (for messages) and the smoothed file being filled.
struct Rewrite {
    name: String,
    out: Dataset,
}

impl TileJob<'_> {
    fn smooth(&self, tile: TileId) -> Result<(), SmoothError> {
        let t = std::time::Instant::now();
        match self.params {
            Smoothing::Bayes(b) => self.bayes(tile, b)?,
            Smoothing::Majority(m) => self.majority(tile, m)?,
        }
        log::debug!("tile {tile}: smoothed in {:.2} s", t.elapsed().as_secs_f64());
        Ok(())
    }

    /// Where the tile lies in the VRT, pixels.
    fn offset(&self, tile: TileId) -> (usize, usize) {
        let (tc, tr) = self.grid.tile_pixels;
        (
            (tile.x - self.origin.0) as usize * tc,
            (tile.y - self.origin.1) as usize * tr,
        )
    }

    fn majority(&self, tile: TileId, params: &MajorityFilter) -> Result<(), SmoothError> {
        let vrt_name = self.vrt.display().to_string();
        let vrt = Dataset::open(self.vrt).map_err(gdal_err(vrt_name.clone()))?;
        let size = vrt.raster_size();
        let (tc, tr) = self.grid.tile_pixels;
        let h = params.halo();
        let (ox, oy) = self.offset(tile);
        let class = self
            .rewrite(tile, "class", true)?
            .expect("every tile has a class file");
        for r0 in (0..tr).step_by(TILE_BLOCK) {
            let rows = TILE_BLOCK.min(tr - r0);
            let at = (ox as isize - h as isize, (oy + r0) as isize - h as isize);
            let shape = (tc + 2 * h, rows + 2 * h);
            let values = read_bands(&vrt, &vrt_name, at, shape, size, 1, CLASS_NODATA)?;
            let out = params.filter(&ClassBlock {
                width: shape.0,
                height: shape.1,
                values,
            });
            put(&class, 1, (0, r0 as isize), (tc, rows), out.values)?;
        }
        class.out.close().map_err(gdal_err(class.name))?;
        Ok(())
    }

    fn bayes(&self, tile: TileId, params: &BayesSmoothing) -> Result<(), SmoothError> {
        let vrt_name = self.vrt.display().to_string();
        let vrt = Dataset::open(self.vrt).map_err(gdal_err(vrt_name.clone()))?;
        let (vw, vh) = vrt.raster_size();
        let (tc, tr) = self.grid.tile_pixels;
        let k = self.classes.len();
        let h = params.halo();
        let (ox, oy) = self.offset(tile);

        let class = self
            .rewrite(tile, "class", true)?
            .expect("every tile has a class file");
        let prob = self
            .rewrite(tile, "prob", false)?
            .expect("every tile has a prob file");
        let probs = self
            .rewrite(tile, "probabilities", false)?
            .expect("checked before");
        let unc = self.rewrite(tile, "uncertainty", false)?;
        let kind = match &unc {
            Some(u) => Some(uncertainty_kind(&u.out, &u.name)?),
            None => None,
        };

        for r0 in (0..tr).step_by(TILE_BLOCK) {
            let rows = TILE_BLOCK.min(tr - r0);
            // The band of rows with its halo, in VRT pixels (may reach beyond the VRT).
            let (bx, by) = (ox as isize - h as isize, (oy + r0) as isize - h as isize);
            let (bw, bh) = (tc + 2 * h, rows + 2 * h);
            let values = read_bands(&vrt, &vrt_name, (bx, by), (bw, bh), (vw, vh), k, PROB_NODATA)?;
            let block = ProbabilityBlock {
                width: bw,
                height: bh,
                classes: k,
                values,
            };
            let s = params.smooth(&block);
            debug_assert_eq!((s.width, s.height), (tc, rows));
            let n = tc * rows;
            let mut class_v = vec![CLASS_NODATA; n];
            let mut prob_v = vec![PROB_NODATA; n];
            let mut probs_v = vec![PROB_NODATA; n * k];
            let mut unc_v = vec![PROB_NODATA; n];
            for i in 0..n {
                let (Some(best), Some(p)) = (s.best[i], s.pixel(i)) else {
                    continue;
                };
                class_v[i] = self.classes[best].code;
                prob_v[i] = scale_prob(p[best]);
                for (b, &v) in p.iter().enumerate() {
                    probs_v[b * n + i] = scale_prob(v);
                }
                if let Some(kind) = kind {
                    unc_v[i] = scale_prob(kind.of(p));
                }
            }
            let at = (0isize, r0 as isize);
            put(&class, 1, at, (tc, rows), class_v)?;
            put(&prob, 1, at, (tc, rows), prob_v)?;
            for (b, part) in probs_v.chunks(n).enumerate() {
                put(&probs, b + 1, at, (tc, rows), part.to_vec())?;
            }
            if let Some(u) = &unc {
                put(u, 1, at, (tc, rows), unc_v)?;
            }
        }
        for r in [Some(class), Some(prob), Some(probs), unc].into_iter().flatten() {
            let Rewrite { name, out } = r;
            out.close().map_err(gdal_err(name))?;
        }
        Ok(())
    }

    /// Creates the smoothed file of a product like its original (bands, nodata, descriptions,
    /// dataset metadata, class styling); `None` when the tile has no such product.
    fn rewrite(&self, tile: TileId, product: &str, byte: bool) -> Result<Option<Rewrite>, SmoothError> {
        let original = self.dir.join(tile_file(tile, product));
        if !original.exists() {
            return Ok(None);
        }
        let name = tile_file(tile, product);
        let src = Dataset::open(&original).map_err(gdal_err(name.clone()))?;
        let bands = src.raster_count();
        let spec = GeoTiffSpec::tile(self.grid, tile, bands, TiffLayout::Tiles { size: TILE_BLOCK });
        let path = self.dir.join(smoothed_name(tile, product));
        let mut out = if byte {
            spec.create::<u8>(&path)
        } else {
            spec.create::<u16>(&path)
        }
        .map_err(gdal_err(name.clone()))?;
        for entry in src.metadata_domain("").unwrap_or_default() {
            if let Some((key, value)) = entry.split_once('=') {
                out.set_metadata_item(key, value, "")
                    .map_err(gdal_err(name.clone()))?;
            }
        }
        out.set_metadata_item(SMOOTHING_METADATA_KEY, &self.params.describe(), "")
            .map_err(gdal_err(name.clone()))?;
        for b in 1..=bands {
            let from = src.rasterband(b).map_err(gdal_err(name.clone()))?;
            let mut to = out.rasterband(b).map_err(gdal_err(name.clone()))?;
            to.set_no_data_value(from.no_data_value())
                .map_err(gdal_err(name.clone()))?;
            to.set_description(&from.description().map_err(gdal_err(name.clone()))?)
                .map_err(gdal_err(name.clone()))?;
            if byte {
                style::style_class_band(&mut to, self.classes).map_err(gdal_err(name.clone()))?;
            } else {
                style::scale_probability_band(&mut to).map_err(gdal_err(name.clone()))?;
            }
        }
        Ok(Some(Rewrite { name, out }))
    }
}

/// The kind of uncertainty an uncertainty file holds, from its band description
/// (`uncertainty (margin, 0-1)`).
fn uncertainty_kind(ds: &Dataset, name: &str) -> Result<Uncertainty, SmoothError> {
    let description = ds
        .rasterband(1)
        .and_then(|b| b.description())
        .map_err(gdal_err(name))?;
    description
        .split(['(', ')'])
        .nth(1)
        .and_then(|k| k.split(',').next())
        .and_then(|k| k.trim().parse().ok())
        .ok_or_else(|| SmoothError::Gdal {
            file: name.to_string(),
            source: GdalCause::new(gdal::errors::GdalError::BadArgument(format!(
                "its band description '{description}' names no uncertainty (margin or entropy)"
            ))),
        })
}

fn put(
    r: &Rewrite,
    band: usize,
    at: (isize, isize),
    shape: (usize, usize),
    v: Vec<impl gdal::raster::GdalType + Copy>,
) -> Result<(), SmoothError> {
    let mut buf = Buffer::new(shape, v);
    r.out
        .rasterband(band)
        .and_then(|mut b| b.write(at, shape, &mut buf))
        .map_err(gdal_err(r.name.clone()))
}

/// Reads the rectangle at `at` (VRT pixels, may reach beyond the VRT's `size`) of the first
/// `bands` bands of `vrt`, band-sequential; what lies beyond is `fill`.
fn read_bands<T: gdal::raster::GdalType + Copy>(
    vrt: &Dataset,
    vrt_name: &str,
    at: (isize, isize),
    shape: (usize, usize),
    size: (usize, usize),
    bands: usize,
    fill: T,
) -> Result<Vec<T>, SmoothError> {
    let (w, h) = shape;
    let mut values = vec![fill; w * h * bands];
    let x0 = at.0.max(0) as usize;
    let y0 = at.1.max(0) as usize;
    let x1 = ((at.0 + w as isize).max(0) as usize).min(size.0);
    let y1 = ((at.1 + h as isize).max(0) as usize).min(size.1);
    if x1 > x0 && y1 > y0 {
        let (rw, rh) = (x1 - x0, y1 - y0);
        let (dx, dy) = ((x0 as isize - at.0) as usize, (y0 as isize - at.1) as usize);
        for b in 0..bands {
            let got = vrt
                .rasterband(b + 1)
                .and_then(|band| band.read_as::<T>((x0 as isize, y0 as isize), (rw, rh), (rw, rh), None))
                .map_err(gdal_err(vrt_name))?;
            let got = got.data();
            for r in 0..rh {
                let dst = (b * h + dy + r) * w + dx;
                values[dst..dst + rw].copy_from_slice(&got[r * rw..(r + 1) * rw]);
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of `classes` classes where every pixel has `p` for class `class_of(row, col)` and
    /// the rest shared evenly; `None` from `class_of` is nodata.
    fn block(
        w: usize,
        h: usize,
        classes: usize,
        p: f32,
        class_of: impl Fn(usize, usize) -> Option<usize>,
    ) -> ProbabilityBlock {
        let mut values = vec![PROB_NODATA; w * h * classes];
        for r in 0..h {
            for c in 0..w {
                let Some(k) = class_of(r, c) else { continue };
                for b in 0..classes {
                    let v = if b == k {
                        p
                    } else {
                        (1.0 - p) / (classes - 1) as f32
                    };
                    values[(b * h + r) * w + c] = scale_prob(v);
                }
            }
        }
        ProbabilityBlock {
            width: w,
            height: h,
            classes,
            values,
        }
    }

    #[test]
    fn an_isolated_pixel_takes_the_class_of_its_uniform_surroundings() {
        let b = block(9, 9, 3, 0.7, |r, c| Some(if (r, c) == (4, 4) { 2 } else { 0 }));
        let s = BayesSmoothing::default().smooth(&b);
        assert_eq!((s.width, s.height), (3, 3));
        assert!(s.best.iter().all(|&c| c == Some(0)), "{:?}", s.best);
        // The surroundings keep their class, as confident as before or more.
        let p = s.pixel(0).unwrap();
        assert!(p[0] >= 0.69, "{p:?}");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_uniform_patch_is_unchanged() {
        let b = block(7, 7, 4, 0.8, |_, _| Some(1));
        let s = BayesSmoothing::default().smooth(&b);
        let p = s.pixel(0).unwrap();
        // Every neighbour has the same logits: mean = the pixel's, variance 0, posterior = mean.
        assert_eq!(s.best, vec![Some(1)]);
        assert!((p[1] - 0.8).abs() < 2e-3, "{p:?}");
    }

    #[test]
    fn nodata_stays_and_does_not_vote() {
        // Class 2 at the centre, nodata around except two class-0 pixels: the centre keeps
        // nodata's vote out, so its own class (with its neighbours' weak ones) decides.
        let b = block(7, 7, 3, 0.7, |r, c| match (r, c) {
            (3, 3) => Some(2),
            (3, 4) | (4, 4) => Some(2),
            (0, 0) => Some(0),
            _ => None,
        });
        let s = BayesSmoothing::default().smooth(&b);
        assert_eq!(s.best, vec![Some(2)]);
        let b = block(7, 7, 3, 0.7, |r, c| ((r, c) != (3, 3)).then_some(0));
        let s = BayesSmoothing::default().smooth(&b);
        assert_eq!(s.best, vec![None]);
        assert!(s.pixel(0).is_none());
    }

    #[test]
    fn the_posterior_is_the_variance_weighted_mean() {
        // 3x3 window, all neighbours used, two classes: class 0's logits are the centre's x0 and
        // eight of m0; class 1's are their negatives. A small smoothness keeps the centre's class,
        // a large one gives it its neighbours'.
        let b = block(3, 3, 2, 0.9, |r, c| Some(if (r, c) == (1, 1) { 1 } else { 0 }));
        for (smoothness, class) in [(1.0f32, 1), (10.0, 0)] {
            let params = BayesSmoothing {
                window: 3,
                neighbour_fraction: 1.0,
                smoothness: f64::from(smoothness),
            };
            let s = params.smooth(&b);
            let x0 = logit(scale_prob(0.1));
            let m0 = logit(scale_prob(0.9));
            let mean = (x0 + 8.0 * m0) / 9.0;
            let var = ((x0 - mean).powi(2) + 8.0 * (m0 - mean).powi(2)) / 9.0;
            let post0 = (var * x0 + smoothness * mean) / (var + smoothness);
            let post1 = -post0;
            let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
            let want0 = sig(post0) / (sig(post0) + sig(post1));
            let p = s.pixel(0).unwrap();
            assert!((p[0] - want0).abs() < 1e-5, "{} vs {want0}", p[0]);
            assert_eq!(s.best, vec![Some(class)], "smoothness {smoothness}");
        }
    }

    fn classes(w: usize, h: usize, class_of: impl Fn(usize, usize) -> u8) -> ClassBlock {
        ClassBlock {
            width: w,
            height: h,
            values: (0..w * h).map(|i| class_of(i / w, i % w)).collect(),
        }
    }

    #[test]
    fn the_majority_filter_replaces_isolated_pixels_and_keeps_nodata() {
        let f = MajorityFilter { window: 3, mmu: 0 };
        let b = classes(5, 5, |r, c| match (r, c) {
            (2, 2) => 4,
            (1, 1) => CLASS_NODATA,
            _ => 1,
        });
        let out = f.filter(&b);
        assert_eq!((out.width, out.height), (3, 3));
        assert_eq!(out.values[0], CLASS_NODATA, "nodata stays");
        assert_eq!(
            out.values[4], 1,
            "the isolated pixel takes its surroundings' class"
        );
        assert!(out.values.iter().enumerate().all(|(i, &v)| i == 0 || v == 1));
        // A tie keeps the pixel's own class: 3 x 3 of which four are 2, four are 3 and the centre 3.
        let b = classes(3, 3, |r, c| {
            if (r * 3 + c) % 2 == 0 && (r, c) != (1, 1) {
                2
            } else {
                3
            }
        });
        let out = MajorityFilter { window: 3, mmu: 0 }.filter(&b);
        assert_eq!(out.values, vec![3]);
    }

    #[test]
    fn the_sieve_merges_regions_below_the_mapping_unit() {
        // A 2 x 2 patch of class 5 in class 0, and a lone class-7 pixel beside nodata.
        let grid = |r: usize, c: usize| match (r, c) {
            (9..=10, 9..=10) => 5,
            (12, 12) => 7,
            (12, 13) | (13, 12) | (13, 13) => CLASS_NODATA,
            _ => 0,
        };
        let b = classes(21, 21, grid);
        for (mmu, patch) in [(4, 5), (5, 0)] {
            let f = MajorityFilter { window: 1, mmu };
            let out = f.filter(&b);
            let h = f.halo();
            assert_eq!(h, mmu);
            let at = |r: usize, c: usize| out.values[(r - h) * out.width + c - h];
            assert_eq!(at(9, 9), patch, "mmu {mmu}");
            assert_eq!(at(10, 10), patch, "mmu {mmu}");
            assert_eq!(at(12, 12), 0, "the lone pixel joins its mapped surroundings");
            assert_eq!(at(13, 13), CLASS_NODATA, "nodata stays");
            assert_eq!(at(h, h), 0);
        }
    }

    #[test]
    fn parameters_are_checked() {
        let ok = BayesSmoothing::default();
        assert!(ok.check().is_ok());
        for (bad, msg) in [
            (BayesSmoothing { window: 4, ..ok }, "odd"),
            (BayesSmoothing { window: 23, ..ok }, "odd"),
            (
                BayesSmoothing {
                    neighbour_fraction: 0.0,
                    ..ok
                },
                "share",
            ),
            (
                BayesSmoothing {
                    smoothness: -1.0,
                    ..ok
                },
                "variance",
            ),
        ] {
            assert!(bad.check().unwrap_err().to_string().contains(msg), "{bad:?}");
        }
        assert!(MajorityFilter { window: 1, mmu: 4 }.check().is_ok());
        assert!(MajorityFilter { window: 2, mmu: 0 }.check().is_err());
        assert!(MajorityFilter {
            window: 3,
            mmu: MAX_MMU + 1
        }
        .check()
        .is_err());
    }
}
