//! Map products from prediction chunks: per-tile GeoTIFFs on the FORCE grid, mosaic VRTs, COGs with
//! overviews, an optional reprojected web mosaic, and a quicklook PNG.
//!
//! The work streams tile by tile: a tile's chunks are read one at a time and written into its
//! GeoTIFFs as row bands, so memory is one chunk (plus one tile of clip mask with `--clip`) per
//! worker, whatever the number of tiles. Everything is written into a staging directory beside
//! `--out-dir` and moved there only when every product is complete.
//!
//! Rules (documented in `docs/formats.md`, "Map products"):
//! - georeferencing comes from the FORCE grid (the chunks' tile geotransform, or `--cube-def`);
//! - a pixel's class in every product is the class the chunk gives it; pixels not in any chunk, and
//!   pixels predict wrote without observations, are nodata;
//! - a tile with chunks missing is an error naming the tile and rows, unless partial maps are allowed;
//! - all inputs must share one grid and one class table.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use gdal::raster::{rasterize, Buffer, RasterizeOptions};
use gdal::vector::Geometry;
use gdal::{Dataset, DriverManager, Metadata};
use rayon::prelude::*;
use treesits_core::chunk::{ChunkError, ChunkMetadata};
use treesits_core::prediction::{PredictionColumns, PredictionMetadata, PredictionReader, PROB_NODATA};
use treesits_core::species::{classes_json, SpeciesClass, CLASS_NODATA};
use treesits_core::staged_dir::StagedDir;
use treesits_core::{CubeDefinition, Date, PixelWindow, TileGrid, TileId};

use treesits_gdal::cog::{self, CogOptions, OverviewResampling};
use treesits_gdal::error::{GdalCause, WriteCheck, WriteFailed};
use treesits_gdal::{GeoTiffSpec, TiffLayout};
use treesits_select::aoi::{Aoi, AoiError, AoiSource};

use crate::provenance::Provenance;
use crate::style;
use crate::vrt::{self, VrtBand, VrtTiles};

/// Block size of the per-tile GeoTIFFs (ZSTD-compressed tiles, as FORCE ≥ 3.8 writes).
pub const TILE_BLOCK: usize = 256;
/// Suffix of prediction chunk files that directory inputs pick up.
pub use treesits_core::names::PREDICTION_SUFFIX as CHUNK_SUFFIX;

/// Why a mosaic could not be made. Every message names the input and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MosaicError {
    #[error("{input}: {reason}")]
    Input { input: String, reason: String },
    #[error("{0}")]
    Mismatch(String),
    #[error("tile {tile}: {detail}; pass --allow-partial to map the missing rows as nodata")]
    Partial { tile: TileId, detail: String },
    #[error(transparent)]
    Clip(#[from] AoiError),
    #[error(transparent)]
    Quicklook(#[from] crate::quicklook::QuicklookError),
    #[error(transparent)]
    Stac(#[from] crate::stac::StacError),
    #[error(
        "{arg} {path}: no tile of the inputs reaches the polygons; check that {arg} covers the mapped area"
    )]
    ClippedAway { arg: &'static str, path: String },
    #[error("{input}: {source}")]
    Read { input: String, source: std::io::Error },
    #[error("{input}: {source}")]
    ChunkGrid { input: String, source: ChunkGridError },
    #[error("--cube-def does not fit the chunks' {resolution} m pixels: {source}")]
    CubeDefGrid {
        resolution: f64,
        source: treesits_core::grid::GridError,
    },
    #[error(
        "stdin: stream {stream} is not a prediction stream ({source}); pipe predict's output into mosaic"
    )]
    NotAStream { stream: usize, source: ChunkError },
    #[error("{input}: {source}")]
    Chunk { input: String, source: ChunkError },
    #[error("{input}: not a prediction chunk ({source}); give the *{CHUNK_SUFFIX} files predict writes")]
    NotAChunk { input: String, source: ChunkError },
    #[error("writing {file}: {source}")]
    WriteRaster { file: String, source: GdalCause },
    #[error("writing {path}: {source}")]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("writing {file}: {source}; nothing was committed (free space and run again)")]
    WriteFailed { file: String, source: WriteFailed },
    #[error(transparent)]
    Smooth(#[from] crate::smooth::SmoothError),
    #[error("no prediction chunks in the inputs: give chunk files, directories holding *{CHUNK_SUFFIX} files, or - for a stream on stdin")]
    NoInput,
}

fn input_err(input: impl std::fmt::Display, reason: impl Into<String>) -> MosaicError {
    MosaicError::Input {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn write_err(file: impl Into<String>) -> impl FnOnce(gdal::errors::GdalError) -> MosaicError {
    let file = file.into();
    move |e| MosaicError::WriteRaster {
        file,
        source: GdalCause::new(e),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MosaicError + '_ {
    move |source| MosaicError::WriteFile {
        path: path.to_path_buf(),
        source,
    }
}

fn read_err(input: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> MosaicError {
    move |source| MosaicError::Read {
        input: input.to_string(),
        source,
    }
}

fn chunk_err(input: impl std::fmt::Display) -> impl FnOnce(ChunkError) -> MosaicError {
    move |source| MosaicError::Chunk {
        input: input.to_string(),
        source,
    }
}

pub use treesits_core::inputs::Input;

/// Expands `--input` values: `-` (stdin), files, directories (their `*.pred.arrows` files) and
/// wildcards in the file name (`chunks/X0058_*.pred.arrows`, for shells that did not expand them),
/// through the one expander every tool shares ([`treesits_core::inputs`]).
pub fn expand_inputs(args: &[String]) -> Result<Vec<Input>, treesits_core::inputs::InputError> {
    let filter = treesits_core::inputs::InputFilter::new(CHUNK_SUFFIX).written_by("predict --out-dir");
    treesits_core::inputs::expand(args, &filter)
}

/// What to make and how.
#[derive(Debug, Clone)]
pub struct MosaicOptions {
    pub out_dir: PathBuf,
    /// Use this grid instead of the one the chunks describe.
    pub cube_def: Option<CubeDefinition>,
    /// Keep only pixels whose centre lies inside these polygons.
    pub clip: Option<AoiSource>,
    /// Also write a web mosaic reprojected to `EPSG:<code>`.
    pub t_srs: Option<u32>,
    /// Map tiles with missing chunks (their rows become nodata) instead of failing.
    pub allow_partial: bool,
    /// Overviews of class mosaics: mode or nearest.
    pub class_overviews: OverviewResampling,
    /// Threads for COG compression and overviews (tiles use the rayon pool).
    pub threads: usize,
    /// Longest side of the quicklook's map, pixels.
    pub quicklook_px: usize,
    /// Smooth the map spatially (Bayesian or majority) before the mosaics are made.
    pub smooth: Option<crate::smooth::Smoothing>,
}

/// What was made.
#[derive(Debug, Clone, Default)]
pub struct MosaicSummary {
    pub tiles: usize,
    pub partial_tiles: usize,
    pub clipped_away_tiles: usize,
    /// Pixels with a class, over all tiles.
    pub mapped_pixels: u64,
    /// Files written into `--out-dir`, sorted.
    pub files: Vec<String>,
    /// (COG file, seconds to build it).
    pub cog_seconds: Vec<(String, f64)>,
}

/// The grid and class table every input must share.
#[derive(Debug)]
struct Reference {
    grid: TileGrid,
    classes: Vec<SpeciesClass>,
    model_id: String,
    from: String,
    /// Whether the grid came from `--cube-def`.
    overridden: bool,
    warned_geotransform: AtomicBool,
    warned_model: AtomicBool,
    /// The span of every input's acquisition dates (the quicklook's title).
    dates: Mutex<(Date, Date)>,
}

/// The FORCE grid a chunk describes: origin = tile corner − tile index × tile size.
fn grid_from_chunk(m: &ChunkMetadata) -> Result<TileGrid, ChunkGridError> {
    let g = m.geotransform;
    let res = g[1];
    if !(res > 0.0 && g[2] == 0.0 && g[4] == 0.0 && g[5] == -res) {
        return Err(ChunkGridError::NotNorthUp(g));
    }
    let tile = (m.tile_size.0 as f64 * res, m.tile_size.1 as f64 * res);
    let def = CubeDefinition {
        projection_wkt: m.crs_wkt.clone(),
        // Not recorded in chunks, and not needed for pixel placement.
        origin_geo: (f64::NAN, f64::NAN),
        origin_map: (
            g[0] - f64::from(m.tile_id.x) * tile.0,
            g[3] + f64::from(m.tile_id.y) * tile.1,
        ),
        tile_size: tile,
        block_size: tile,
    };
    Ok(TileGrid::new(def, res)?)
}

/// Why a chunk's metadata describes no FORCE grid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkGridError {
    #[error("its geotransform {0:?} is not a north-up grid of square pixels, as FORCE's are")]
    NotNorthUp([f64; 6]),
    #[error(transparent)]
    Grid(#[from] treesits_core::grid::GridError),
}

fn same_crs(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        gdal::spatial_ref::SpatialRef::from_wkt(a),
        gdal::spatial_ref::SpatialRef::from_wkt(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn close(a: f64, b: f64, res: f64) -> bool {
    (a - b).abs() <= 1e-6 * res
}

impl Reference {
    fn new(
        meta: &PredictionMetadata,
        from: &str,
        cube_def: Option<&CubeDefinition>,
    ) -> Result<Reference, MosaicError> {
        let derived = grid_from_chunk(&meta.source).map_err(|source| MosaicError::ChunkGrid {
            input: from.to_string(),
            source,
        })?;
        let (grid, overridden) = match cube_def {
            None => (derived, false),
            Some(def) => {
                let grid = TileGrid::new(def.clone(), derived.resolution).map_err(|source| {
                    MosaicError::CubeDefGrid {
                        resolution: derived.resolution,
                        source,
                    }
                })?;
                if grid.tile_pixels != derived.tile_pixels {
                    return Err(MosaicError::Mismatch(format!(
                        "--cube-def has tiles of {}x{} pixels at {} m but {from} has {}x{}: give the \
                         datacube-definition.prj of the cube the chunks were extracted from",
                        grid.tile_pixels.0,
                        grid.tile_pixels.1,
                        grid.resolution,
                        derived.tile_pixels.0,
                        derived.tile_pixels.1
                    )));
                }
                (grid, true)
            }
        };
        Ok(Reference {
            grid,
            classes: meta.classes.clone(),
            model_id: meta.model_id.clone(),
            from: from.to_string(),
            overridden,
            warned_geotransform: AtomicBool::new(false),
            warned_model: AtomicBool::new(false),
            dates: Mutex::new((meta.source.date_start, meta.source.date_end)),
        })
    }

    /// Refuses chunks on another grid or with another class table.
    fn check(&self, meta: &PredictionMetadata, from: &str) -> Result<(), MosaicError> {
        {
            let mut d = self
                .dates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *d = (d.0.min(meta.source.date_start), d.1.max(meta.source.date_end));
        }
        if meta.classes != self.classes {
            let names = |c: &[SpeciesClass]| {
                c.iter()
                    .map(|c| format!("{}={}", c.code, c.name))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(MosaicError::Mismatch(format!(
                "{from} has another class table than {} ({} vs {}): mosaic the maps of one model at a time",
                self.from,
                names(&meta.classes),
                names(&self.classes)
            )));
        }
        if meta.model_id != self.model_id && !self.warned_model.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{from} comes from model '{}', {} from '{}' (same class table, mapped together)",
                meta.model_id,
                self.from,
                self.model_id
            );
        }
        let derived = grid_from_chunk(&meta.source).map_err(|source| MosaicError::ChunkGrid {
            input: from.to_string(),
            source,
        })?;
        let g = &self.grid;
        let tile = meta.source.tile_id;
        if derived.tile_pixels != g.tile_pixels || !close(derived.resolution, g.resolution, g.resolution) {
            return Err(MosaicError::Mismatch(format!(
                "{from} is on another grid than {} (tiles of {}x{} pixels of {} m vs {}x{} of {} m): \
                 mosaic chunks of one cube at a time",
                self.from,
                derived.tile_pixels.0,
                derived.tile_pixels.1,
                derived.resolution,
                g.tile_pixels.0,
                g.tile_pixels.1,
                g.resolution
            )));
        }
        let expected = g.geotransform(tile);
        let here = meta.source.geotransform;
        let same_place =
            close(here[0], expected[0], g.resolution) && close(here[3], expected[3], g.resolution);
        if self.overridden {
            if !same_place && !self.warned_geotransform.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "{from} places tile {tile} at ({}, {}), --cube-def at ({}, {}): using --cube-def",
                    here[0],
                    here[3],
                    expected[0],
                    expected[3]
                );
            }
            return Ok(());
        }
        if !same_place {
            return Err(MosaicError::Mismatch(format!(
                "{from} is on another grid than {}: tile {tile} starts at ({}, {}) there but the grid of {} puts \
                 it at ({}, {}); mosaic chunks of one cube at a time (or give --cube-def)",
                self.from, here[0], here[3], self.from, expected[0], expected[3]
            )));
        }
        if !same_crs(&meta.source.crs_wkt, &g.definition.projection_wkt) {
            return Err(MosaicError::Mismatch(format!(
                "{from} is in another CRS than {}: mosaic chunks of one cube at a time",
                self.from
            )));
        }
        Ok(())
    }
}

/// A chunk file and what it says about itself.
#[derive(Debug, Clone)]
struct ChunkFile {
    path: PathBuf,
    meta: PredictionMetadata,
}

fn open_chunk(path: &Path) -> Result<PredictionReader<BufReader<File>>, MosaicError> {
    let f = File::open(path).map_err(read_err(path.display()))?;
    PredictionReader::new(BufReader::new(f)).map_err(|source| MosaicError::NotAChunk {
        input: path.display().to_string(),
        source,
    })
}

/// Row ranges (first, last, inclusive) where `covered` is false.
fn gaps(covered: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &c) in covered.iter().chain(std::iter::once(&true)).enumerate() {
        match (c, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn format_rows(ranges: &[(usize, usize)]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("{a}")
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    format!(
        "row{} {}",
        if ranges.len() == 1 && ranges[0].0 == ranges[0].1 {
            ""
        } else {
            "s"
        },
        parts.join(", ")
    )
}

fn format_indices(v: &[usize]) -> String {
    const SHOW: usize = 12;
    let mut s: Vec<String> = v.iter().take(SHOW).map(usize::to_string).collect();
    if v.len() > SHOW {
        s.push(format!("… ({} in all)", v.len()));
    }
    s.join(", ")
}

/// What differs between two chunks of one tile that one run of cube-extract and predict would have
/// made alike (the acquisitions read, the screen, the model), if anything: chunks of two runs mixed
/// in one directory (a run killed while committing, or two runs into one directory).
fn run_difference(a: &PredictionMetadata, b: &PredictionMetadata) -> Option<String> {
    let (x, y) = (&a.source, &b.source);
    if (x.date_start, x.date_end) != (y.date_start, y.date_end) {
        return Some(format!(
            "acquisitions {}..{} vs {}..{}",
            x.date_start, x.date_end, y.date_start, y.date_end
        ));
    }
    if x.sensors != y.sensors {
        let names = |s: &[treesits_core::Sensor]| s.iter().map(|s| s.name()).collect::<Vec<_>>().join(",");
        return Some(format!("sensors {} vs {}", names(&x.sensors), names(&y.sensors)));
    }
    if x.qai_screen != y.qai_screen {
        return Some(format!("QAI screen {} vs {}", x.qai_screen, y.qai_screen));
    }
    if x.band_names != y.band_names {
        return Some("other bands".into());
    }
    if a.model_id != b.model_id {
        return Some(format!("model {} vs {}", a.model_id, b.model_id));
    }
    None
}

fn mixed_runs(tile: TileId, first: &str, other: &str, what: &str) -> MosaicError {
    MosaicError::Mismatch(format!(
        "tile {tile}: {first} and {other} come from different runs ({what}): extract and predict the \
         tile again into an empty directory"
    ))
}

/// The chunk files of one tile, checked for coverage.
#[derive(Debug)]
struct TilePlan {
    tile: TileId,
    files: Vec<ChunkFile>,
    /// Missing rows (only when partial maps are allowed).
    missing: Vec<(usize, usize)>,
}

/// Groups chunk files by tile and checks each tile: one chunk count, no chunk twice, none missing.
fn plan_tiles(files: Vec<ChunkFile>, allow_partial: bool) -> Result<Vec<TilePlan>, MosaicError> {
    let mut by_tile: BTreeMap<TileId, Vec<ChunkFile>> = BTreeMap::new();
    for f in files {
        by_tile.entry(f.meta.source.tile_id).or_default().push(f);
    }
    let mut plans = Vec::new();
    for (tile, mut files) in by_tile {
        files.sort_by_key(|f| f.meta.source.chunk_index);
        let first = &files[0];
        if let Some(stream) = files.iter().find(|f| f.meta.source.chunk_index.is_none()) {
            if files.len() > 1 {
                let other = files.iter().find(|f| f.path != stream.path).expect("two files");
                return Err(MosaicError::Mismatch(format!(
                    "tile {tile} is given twice: as a whole-tile stream in {} and in {}; give one of them",
                    stream.path.display(),
                    other.path.display()
                )));
            }
        }
        for f in &files[1..] {
            let (a, b) = (&first.meta, &f.meta);
            if a.source.chunk_count != b.source.chunk_count {
                return Err(MosaicError::Mismatch(format!(
                    "tile {tile}: {} belongs to a run with {} chunks, {} to one with {}: remove the chunks of the older run",
                    first.path.display(),
                    a.source.chunk_count,
                    f.path.display(),
                    b.source.chunk_count
                )));
            }
            if let Some(what) = run_difference(a, b) {
                return Err(mixed_runs(
                    tile,
                    &first.path.display().to_string(),
                    &f.path.display().to_string(),
                    &what,
                ));
            }
            if a.probabilities != b.probabilities || a.uncertainty != b.uncertainty {
                return Err(MosaicError::Mismatch(format!(
                    "tile {tile}: {} and {} carry different columns (probabilities/uncertainty): predict the \
                     whole tile with the same options",
                    first.path.display(),
                    f.path.display()
                )));
            }
        }
        for w in files.windows(2) {
            if w[0].meta.source.chunk_index == w[1].meta.source.chunk_index {
                return Err(MosaicError::Mismatch(format!(
                    "chunk {} of tile {tile} is given twice: {} and {}; give each chunk once",
                    w[0].meta.source.chunk_index.unwrap_or(0),
                    w[0].path.display(),
                    w[1].path.display()
                )));
            }
        }
        let mut missing = Vec::new();
        if first.meta.source.chunk_index.is_some() {
            let count = first.meta.source.chunk_count;
            let have: BTreeSet<usize> = files.iter().filter_map(|f| f.meta.source.chunk_index).collect();
            if let Some(bad) = have.iter().find(|&&i| i >= count) {
                return Err(input_err(
                    tile,
                    format!("chunk index {bad} is not below the chunk count {count}"),
                ));
            }
            let absent: Vec<usize> = (0..count).filter(|i| !have.contains(i)).collect();
            if !absent.is_empty() {
                let rows = first.meta.source.tile_size.1;
                let mut covered = vec![false; rows];
                for f in &files {
                    let w = f.meta.source.window;
                    for c in covered.iter_mut().skip(w.row).take(w.rows) {
                        *c = true;
                    }
                }
                missing = gaps(&covered);
                let detail = format!(
                    "chunk{} {} of {count} missing ({} never predicted)",
                    if absent.len() == 1 { "" } else { "s" },
                    format_indices(&absent),
                    format_rows(&missing)
                );
                if !allow_partial {
                    return Err(MosaicError::Partial { tile, detail });
                }
                log::warn!("tile {tile}: {detail}; mapping them as nodata (--allow-partial)");
            }
        }
        plans.push(TilePlan { tile, files, missing });
    }
    Ok(plans)
}

/// The polygons of `--clip` in the grid's CRS, as WKB (so they can cross threads).
#[derive(Debug, Clone)]
struct Clip {
    aoi: Aoi,
}

impl Clip {
    fn load(source: &AoiSource, wkt: &str) -> Result<Clip, MosaicError> {
        // The source names its own flag (--clip), so the loader's messages need no rewording.
        let aoi = Aoi::load(source, wkt)?;
        Ok(Clip { aoi })
    }

    /// The tile's pixels inside the polygons (1) or not (0); `None` when no polygon reaches the tile.
    fn tile_mask(&self, grid: &TileGrid, tile: TileId) -> Result<Option<Vec<u8>>, MosaicError> {
        let extent = grid.definition.tile_extent(tile);
        let what = format!("the --clip mask of tile {tile}");
        let parts: Vec<Geometry> = self
            .aoi
            .polygons
            .iter()
            .filter(|p| p.envelope.intersection(&extent).is_some())
            .map(|p| Geometry::from_wkb(&p.wkb))
            .collect::<Result<_, _>>()
            .map_err(write_err(what.clone()))?;
        if parts.is_empty() {
            return Ok(None);
        }
        let (cols, rows) = grid.tile_pixels;
        let mem = DriverManager::get_driver_by_name("MEM").map_err(write_err(what.clone()))?;
        let mut ds = mem
            .create_with_band_type::<u8, _>("", cols, rows, 1)
            .map_err(write_err(what.clone()))?;
        ds.set_geo_transform(&grid.geotransform(tile))
            .map_err(write_err(what.clone()))?;
        let burn = vec![1.0; parts.len()];
        rasterize(&mut ds, &[1], &parts, &burn, Some(RasterizeOptions::default()))
            .map_err(write_err(what.clone()))?;
        let mask = ds
            .rasterband(1)
            .and_then(|b| b.read_as::<u8>((0, 0), (cols, rows), (cols, rows), None))
            .map_err(write_err(what))?
            .into_shape_and_vec()
            .1;
        Ok(mask.contains(&1).then_some(mask))
    }
}

/// Shared state of one run. The first input sets the reference (and loads `--clip` in its CRS);
/// that happens before any tile is written, so tile workers only read it.
struct Run<'a> {
    opts: &'a MosaicOptions,
    dir: PathBuf,
    reference: OnceLock<Reference>,
    clip: OnceLock<Clip>,
}

impl Run<'_> {
    /// Checks `meta` against the inputs seen so far.
    fn admit(&self, meta: &PredictionMetadata, from: &str) -> Result<(), MosaicError> {
        if let Some(r) = self.reference.get() {
            return r.check(meta, from);
        }
        let r = Reference::new(meta, from, self.opts.cube_def.as_ref())?;
        r.check(meta, from)?;
        if let Some(src) = &self.opts.clip {
            let _ = self.clip.set(Clip::load(src, &r.grid.definition.projection_wkt)?);
        }
        let _ = self.reference.set(r);
        Ok(())
    }

    fn reference(&self) -> &Reference {
        self.reference.get().expect("set by the first input")
    }
}

/// Per-tile product file names.
pub fn tile_file(tile: TileId, product: &str) -> String {
    format!("{tile}_{product}.tif")
}

/// What a tile has been written with.
#[derive(Debug, Clone)]
pub(crate) struct TileOutput {
    pub(crate) tile: TileId,
    pub(crate) provenance: Provenance,
    probabilities: bool,
    uncertainty: bool,
    mapped: u64,
    partial: bool,
}

/// One tile's GeoTIFFs being filled, chunk by chunk.
struct TileWriter<'a> {
    tile: TileId,
    provenance: Provenance,
    grid: &'a TileGrid,
    classes: usize,
    valid_class: [bool; 256],
    class: Dataset,
    prob: Dataset,
    probabilities: Option<Dataset>,
    uncertainty: Option<Dataset>,
    clip: Option<Vec<u8>>,
    written: Vec<bool>,
    chunks: BTreeSet<usize>,
    mapped: u64,
}

impl<'a> TileWriter<'a> {
    /// Creates the tile's files; `None` when `--clip` leaves nothing of the tile.
    fn new(run: &'a Run, meta: &PredictionMetadata) -> Result<Option<TileWriter<'a>>, MosaicError> {
        let r = run.reference();
        let grid = &r.grid;
        let tile = meta.source.tile_id;
        let clip = match run.clip.get() {
            None => None,
            Some(c) => match c.tile_mask(grid, tile)? {
                None => return Ok(None),
                some => some,
            },
        };
        let layout = TiffLayout::Tiles { size: TILE_BLOCK };
        let provenance = Provenance::of_tile(meta);
        let create = |product: &str, bands: usize, byte: bool| -> Result<Dataset, MosaicError> {
            let name = tile_file(tile, product);
            let path = run.dir.join(&name);
            let spec = GeoTiffSpec::tile(grid, tile, bands, layout);
            let mut ds = if byte {
                spec.create::<u8>(&path)
            } else {
                spec.create::<u16>(&path)
            }
            .map_err(write_err(name.clone()))?;
            let nodata = if byte {
                f64::from(CLASS_NODATA)
            } else {
                f64::from(PROB_NODATA)
            };
            for b in 1..=bands {
                ds.rasterband(b)
                    .and_then(|mut band| band.set_no_data_value(Some(nodata)))
                    .map_err(write_err(name.clone()))?;
            }
            // What the tile's map was made from: the model, and the acquisitions' date range,
            // sensors and QAI screen that cube-extract recorded.
            for (key, value) in provenance.metadata() {
                ds.set_metadata_item(&key, &value, "")
                    .map_err(write_err(name.clone()))?;
            }
            Ok(ds)
        };
        let class = create("class", 1, true)?;
        {
            let mut band = class.rasterband(1).map_err(write_err(tile_file(tile, "class")))?;
            style::style_class_band(&mut band, &r.classes).map_err(write_err(tile_file(tile, "class")))?;
            band.set_description("class")
                .map_err(write_err(tile_file(tile, "class")))?;
        }
        let mut class = class;
        class
            .set_metadata_item(
                treesits_core::names::CLASSES_METADATA_KEY,
                &classes_json(&r.classes),
                "",
            )
            .map_err(write_err(tile_file(tile, "class")))?;
        // Probability-like bands keep the stored UInt16 × 10000 and say so with scale and offset, so
        // GDAL and GIS tools read 0–1; each product gets its style files beside it.
        let scaled = |ds: &Dataset, band: usize, description: &str, product: &str| {
            ds.rasterband(band)
                .and_then(|mut b| {
                    b.set_description(description)?;
                    style::scale_probability_band(&mut b)
                })
                .map_err(write_err(tile_file(tile, product)))
        };
        let styles = |product: &str, s: style::Style| {
            let base = format!("{tile}_{product}");
            style::write_styles(&run.dir, &base, s).map_err(io_err(&run.dir.join(base)))
        };
        styles("class", style::Style::Classes(&r.classes))?;
        let prob = create("prob", 1, false)?;
        scaled(&prob, 1, "probability of the class (0-1)", "prob")?;
        styles("prob", style::Style::Ramp { title: "probability" })?;
        let probabilities = if meta.probabilities {
            let ds = create("probabilities", r.classes.len(), false)?;
            for (i, c) in r.classes.iter().enumerate() {
                scaled(
                    &ds,
                    i + 1,
                    &format!("probability of {} (0-1)", c.name),
                    "probabilities",
                )?;
            }
            styles("probabilities", style::Style::Ramp { title: "probability" })?;
            Some(ds)
        } else {
            None
        };
        let uncertainty = match meta.uncertainty {
            Some(u) => {
                let ds = create("uncertainty", 1, false)?;
                scaled(&ds, 1, &format!("uncertainty ({}, 0-1)", u.name()), "uncertainty")?;
                styles("uncertainty", style::Style::Ramp { title: "uncertainty" })?;
                Some(ds)
            }
            None => None,
        };
        let mut valid_class = [false; 256];
        valid_class[usize::from(CLASS_NODATA)] = true;
        for c in &r.classes {
            valid_class[usize::from(c.code)] = true;
        }
        Ok(Some(TileWriter {
            tile,
            provenance,
            grid,
            classes: r.classes.len(),
            valid_class,
            class,
            prob,
            probabilities,
            uncertainty,
            clip,
            written: vec![false; grid.tile_pixels.1],
            chunks: BTreeSet::new(),
            mapped: 0,
        }))
    }

    /// Writes rows `window.row .. window.row + window.rows` (full width) from one chunk's pixels; every
    /// pixel must lie inside the window.
    fn write_rows(
        &mut self,
        window: PixelWindow,
        c: &PredictionColumns,
        from: &str,
    ) -> Result<(), MosaicError> {
        let (cols, rows) = self.grid.tile_pixels;
        let tile = self.tile;
        if window.row + window.rows > rows || window.rows == 0 {
            return Err(input_err(
                from,
                format!(
                    "its window (rows {}+{}) lies outside tile {tile}'s {rows} rows",
                    window.row, window.rows
                ),
            ));
        }
        if let Some(r) = self.written[window.row..window.row + window.rows]
            .iter()
            .position(|&w| w)
        {
            return Err(input_err(
                from,
                format!(
                    "row {} of tile {tile} is given a second time; give each chunk once",
                    window.row + r
                ),
            ));
        }
        let n = window.rows * cols;
        let k = self.classes;
        let mut class = vec![CLASS_NODATA; n];
        let mut prob = vec![PROB_NODATA; n];
        let mut probs = self.probabilities.as_ref().map(|_| vec![PROB_NODATA; n * k]);
        let mut unc = self.uncertainty.as_ref().map(|_| vec![PROB_NODATA; n]);
        if c.probabilities.is_some() != probs.is_some() || c.uncertainty.is_some() != unc.is_some() {
            return Err(input_err(from, "its columns differ from the tile's other chunks"));
        }
        let mut seen = vec![false; n];
        for i in 0..c.pixels() {
            let (row, col) = (c.row[i] as usize, c.col[i] as usize);
            if row < window.row || row >= window.row + window.rows || col >= cols {
                return Err(input_err(
                    from,
                    format!(
                        "pixel (row {row}, col {col}) lies outside its window (rows {}-{}, {cols} columns)",
                        window.row,
                        window.row + window.rows - 1
                    ),
                ));
            }
            let cl = c.class[i];
            if !self.valid_class[usize::from(cl)] {
                return Err(input_err(
                    from,
                    format!("pixel (row {row}, col {col}) has class {cl}, which the chunk's class table does not have"),
                ));
            }
            let j = (row - window.row) * cols + col;
            if std::mem::replace(&mut seen[j], true) {
                return Err(input_err(
                    from,
                    format!(
                        "pixel (row {row}, col {col}) appears twice; the chunk is damaged, predict it again"
                    ),
                ));
            }
            if self.clip.as_ref().is_some_and(|m| m[row * cols + col] == 0) {
                continue;
            }
            class[j] = cl;
            prob[j] = c.prob[i];
            if let (Some(dst), Some(src)) = (&mut probs, &c.probabilities) {
                // Band-sequential: band b's values for this window start at b * n.
                for b in 0..k {
                    dst[b * n + j] = src[i * k + b];
                }
            }
            if let (Some(dst), Some(src)) = (&mut unc, &c.uncertainty) {
                dst[j] = src[i];
            }
            if cl != CLASS_NODATA {
                self.mapped += 1;
            }
        }
        self.put(window.row, window.rows, class, prob, probs, unc)?;
        for w in &mut self.written[window.row..window.row + window.rows] {
            *w = true;
        }
        Ok(())
    }

    fn put(
        &mut self,
        row: usize,
        rows: usize,
        class: Vec<u8>,
        prob: Vec<u16>,
        probs: Option<Vec<u16>>,
        unc: Option<Vec<u16>>,
    ) -> Result<(), MosaicError> {
        let cols = self.grid.tile_pixels.0;
        let tile = self.tile;
        let n = rows * cols;
        let at = (0isize, row as isize);
        let shape = (cols, rows);
        let mut b = Buffer::new(shape, class);
        self.class
            .rasterband(1)
            .and_then(|mut band| band.write(at, shape, &mut b))
            .map_err(write_err(tile_file(tile, "class")))?;
        let mut b = Buffer::new(shape, prob);
        self.prob
            .rasterband(1)
            .and_then(|mut band| band.write(at, shape, &mut b))
            .map_err(write_err(tile_file(tile, "prob")))?;
        if let (Some(ds), Some(v)) = (&self.probabilities, probs) {
            for (i, part) in v.chunks(n).enumerate() {
                let mut b = Buffer::new(shape, part.to_vec());
                ds.rasterband(i + 1)
                    .and_then(|mut band| band.write(at, shape, &mut b))
                    .map_err(write_err(tile_file(tile, "probabilities")))?;
            }
        }
        if let (Some(ds), Some(v)) = (&self.uncertainty, unc) {
            let mut b = Buffer::new(shape, v);
            ds.rasterband(1)
                .and_then(|mut band| band.write(at, shape, &mut b))
                .map_err(write_err(tile_file(tile, "uncertainty")))?;
        }
        Ok(())
    }

    /// Fills rows no chunk gave with nodata and closes the files.
    fn finish(mut self, partial: bool) -> Result<TileOutput, MosaicError> {
        let cols = self.grid.tile_pixels.0;
        let k = self.classes;
        for (a, b) in gaps(&self.written) {
            let mut row = a;
            while row <= b {
                let rows = TILE_BLOCK.min(b + 1 - row);
                let n = rows * cols;
                let probs = self.probabilities.as_ref().map(|_| vec![PROB_NODATA; n * k]);
                let unc = self.uncertainty.as_ref().map(|_| vec![PROB_NODATA; n]);
                self.put(row, rows, vec![CLASS_NODATA; n], vec![PROB_NODATA; n], probs, unc)?;
                row += rows;
            }
        }
        let tile = self.tile;
        let out = TileOutput {
            tile,
            provenance: self.provenance.clone(),
            probabilities: self.probabilities.is_some(),
            uncertainty: self.uncertainty.is_some(),
            mapped: self.mapped,
            partial,
        };
        // Closing flushes the compressed blocks; a failure there is a failed write (which GDAL 3.6
        // reports only to its error handler, hence the check around each close).
        let close = |ds: Dataset, product: &str| -> Result<(), MosaicError> {
            let check = WriteCheck::start();
            ds.close().map_err(write_err(tile_file(tile, product)))?;
            check.finish().map_err(|source| MosaicError::WriteFailed {
                file: tile_file(tile, product),
                source,
            })
        };
        close(self.class, "class")?;
        close(self.prob, "prob")?;
        if let Some(ds) = self.probabilities {
            close(ds, "probabilities")?;
        }
        if let Some(ds) = self.uncertainty {
            close(ds, "uncertainty")?;
        }
        Ok(out)
    }
}

/// Writes one tile from its chunk files, in row order. Every GDAL write of the tile happens on this
/// thread, under one [`WriteCheck`]: a block GDAL could not write (disk full) fails the tile.
fn write_file_tile(run: &Run, plan: &TilePlan) -> Result<Option<TileOutput>, MosaicError> {
    let check = WriteCheck::start();
    let out = write_file_tile_unchecked(run, plan)?;
    check.finish().map_err(|e| MosaicError::WriteFailed {
        file: format!("the files of tile {}", plan.tile),
        source: e,
    })?;
    Ok(out)
}

fn write_file_tile_unchecked(run: &Run, plan: &TilePlan) -> Result<Option<TileOutput>, MosaicError> {
    let started = Instant::now();
    let Some(mut w) = TileWriter::new(run, &plan.files[0].meta)? else {
        log::info!("tile {}: outside --clip, skipped", plan.tile);
        return Ok(None);
    };
    for f in &plan.files {
        let from = f.path.display().to_string();
        let reader = open_chunk(&f.path)?;
        match f.meta.source.chunk_index {
            Some(i) => {
                let c = chunk_batches(reader, &from)?;
                w.write_rows(f.meta.source.window, &c, &from)?;
                w.chunks.insert(i);
            }
            None => write_stream_batches(&mut w, reader, &from)?,
        }
    }
    let partial = !plan.missing.is_empty();
    if let Some(detail) = stream_gap(&w, &plan.files[0].meta) {
        if !run.opts.allow_partial {
            return Err(MosaicError::Partial {
                tile: plan.tile,
                detail,
            });
        }
        log::warn!(
            "tile {}: {detail}; mapping them as nodata (--allow-partial)",
            plan.tile
        );
    }
    let out = w.finish(partial)?;
    log::info!(
        "tile {}: {} pixels mapped{} in {:.2} s",
        out.tile,
        out.mapped,
        if partial { " (partial)" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(Some(out))
}

/// Every batch of one chunk's stream as one set of columns: a chunk is one batch, or several (one per
/// column range of its rows) when its time series did not fit the extraction's memory budget; its
/// predictions are small (15 bytes per pixel, 2 per class more with probabilities) beside those.
fn chunk_batches<R: std::io::Read>(
    reader: PredictionReader<R>,
    from: &str,
) -> Result<PredictionColumns, MosaicError> {
    let mut all: Option<PredictionColumns> = None;
    for c in reader {
        let c = c.map_err(chunk_err(from))?;
        match &mut all {
            None => all = Some(c),
            Some(a) => a.append(c).map_err(chunk_err(from))?,
        }
    }
    all.ok_or_else(|| input_err(from, "holds no batch (truncated file?); predict this chunk again"))
}

/// Writes the batches of a whole-tile stream (one batch per chunk, in row order): a batch's rows are
/// the span of its pixels.
fn write_stream_batches<R: std::io::Read>(
    w: &mut TileWriter,
    reader: PredictionReader<R>,
    from: &str,
) -> Result<(), MosaicError> {
    for (j, c) in reader.enumerate() {
        let c = c.map_err(chunk_err(from))?;
        let first = c.row.iter().min();
        let last = c.row.iter().max();
        if let (Some(&a), Some(&b)) = (first, last) {
            let window = PixelWindow {
                row: a as usize,
                col: 0,
                rows: (b - a) as usize + 1,
                cols: w.grid.tile_pixels.0,
            };
            w.write_rows(window, &c, &format!("{from} (batch {j})"))?;
        }
        w.chunks.insert(w.chunks.len());
    }
    Ok(())
}

/// For whole-tile streams: how many chunks are missing, if any.
fn stream_gap(w: &TileWriter, meta: &PredictionMetadata) -> Option<String> {
    if meta.source.chunk_index.is_some() {
        return None;
    }
    let count = meta.source.chunk_count;
    let have = w.chunks.len();
    (have < count).then(|| {
        let last = w.written.iter().rposition(|&x| x);
        format!(
            "the stream ended after {have} of {count} chunks ({} never predicted)",
            match last {
                Some(r) => format!("rows after {r}"),
                None => "every row".into(),
            }
        )
    })
}

/// A tile arriving on stdin, possibly over several streams (chunk files piped one after another).
struct StdinTile<'a> {
    tile: TileId,
    /// `None` when `--clip` leaves nothing of the tile: its streams are read and dropped.
    writer: Option<TileWriter<'a>>,
    meta: PredictionMetadata,
    started: Instant,
    /// Row windows of the chunk streams seen (for naming missing rows).
    windows: Vec<PixelWindow>,
}

impl<'a> StdinTile<'a> {
    fn consume<R: std::io::Read>(
        &mut self,
        reader: PredictionReader<R>,
        meta: &PredictionMetadata,
        from: &str,
    ) -> Result<(), MosaicError> {
        let tile = self.tile;
        if (meta.source.chunk_index.is_none() || self.meta.source.chunk_index.is_none())
            && self.started_streams() > 0
        {
            return Err(input_err(
                from,
                format!("tile {tile} arrives as a whole-tile stream and as other streams: send it once"),
            ));
        }
        let Some(w) = &mut self.writer else {
            for c in reader {
                c.map_err(chunk_err(from))?;
            }
            self.windows.push(meta.source.window);
            return Ok(());
        };
        match meta.source.chunk_index {
            Some(i) => {
                if let Some(what) = run_difference(&self.meta, meta) {
                    return Err(mixed_runs(tile, "the tile's first stream", from, &what));
                }
                if meta.source.chunk_count != self.meta.source.chunk_count {
                    return Err(MosaicError::Mismatch(format!(
                        "{from} belongs to a run with {} chunks, the tile's earlier streams to one with {}",
                        meta.source.chunk_count, self.meta.source.chunk_count
                    )));
                }
                if !w.chunks.insert(i) {
                    return Err(input_err(
                        from,
                        format!("chunk {i} of tile {tile} is given twice; give each chunk once"),
                    ));
                }
                let c = chunk_batches(reader, from)?;
                w.write_rows(meta.source.window, &c, from)?;
            }
            None => write_stream_batches(w, reader, from)?,
        }
        self.windows.push(meta.source.window);
        Ok(())
    }

    fn started_streams(&self) -> usize {
        self.windows.len()
    }

    fn finish(self, allow_partial: bool) -> Result<Option<TileOutput>, MosaicError> {
        let tile = self.tile;
        let Some(w) = self.writer else {
            log::info!("tile {tile}: outside --clip, skipped");
            return Ok(None);
        };
        let detail = match self.meta.source.chunk_index {
            None => stream_gap(&w, &self.meta),
            Some(_) => {
                let count = self.meta.source.chunk_count;
                let absent: Vec<usize> = (0..count).filter(|i| !w.chunks.contains(i)).collect();
                (!absent.is_empty()).then(|| {
                    let mut covered = vec![false; w.grid.tile_pixels.1];
                    for win in &self.windows {
                        for c in covered.iter_mut().skip(win.row).take(win.rows) {
                            *c = true;
                        }
                    }
                    format!(
                        "chunk{} {} of {count} missing on stdin ({} never predicted)",
                        if absent.len() == 1 { "" } else { "s" },
                        format_indices(&absent),
                        format_rows(&gaps(&covered))
                    )
                })
            }
        };
        if let Some(detail) = &detail {
            if !allow_partial {
                return Err(MosaicError::Partial {
                    tile,
                    detail: detail.clone(),
                });
            }
            log::warn!("tile {tile}: {detail}; mapping them as nodata (--allow-partial)");
        }
        let out = w.finish(detail.is_some())?;
        log::info!(
            "tile {tile}: {} pixels mapped{} in {:.2} s (stdin)",
            out.mapped,
            if out.partial { " (partial)" } else { "" },
            self.started.elapsed().as_secs_f64()
        );
        Ok(Some(out))
    }
}

fn at_end(input: &mut dyn BufRead) -> Result<bool, MosaicError> {
    Ok(input.fill_buf().map_err(read_err("stdin"))?.is_empty())
}

/// Reads tiles from stdin: one or more prediction streams back to back, each holding one chunk or a
/// whole tile; the streams of one tile must follow each other.
fn stdin_tiles(run: &Run, input: &mut dyn BufRead) -> Result<Vec<TileOutput>, MosaicError> {
    let mut outputs = Vec::new();
    let mut done: BTreeSet<TileId> = BTreeSet::new();
    let mut current: Option<StdinTile> = None;
    let mut streams = 0usize;
    while !at_end(input)? {
        streams += 1;
        let reader = PredictionReader::new(&mut *input).map_err(|source| MosaicError::NotAStream {
            stream: streams,
            source,
        })?;
        let meta = reader.metadata().clone();
        let tile = meta.source.tile_id;
        let from = format!("stdin (stream {streams}, tile {tile})");
        run.admit(&meta, &from)?;
        if current.as_ref().map(|c| c.tile) != Some(tile) {
            if let Some(c) = current.take() {
                outputs.extend(c.finish(run.opts.allow_partial)?);
            }
            if !done.insert(tile) {
                return Err(input_err(
                    &from,
                    format!("tile {tile} appears again after other tiles; send each tile's chunks together"),
                ));
            }
            current = Some(StdinTile {
                tile,
                writer: TileWriter::new(run, &meta)?,
                meta: meta.clone(),
                started: Instant::now(),
                windows: Vec::new(),
            });
        }
        current
            .as_mut()
            .expect("set above")
            .consume(reader, &meta, &from)?;
    }
    if let Some(c) = current.take() {
        outputs.extend(c.finish(run.opts.allow_partial)?);
    }
    Ok(outputs)
}

/// A CRS code GDAL does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EPSG:{0} is not a CRS GDAL knows")]
pub struct UnknownEpsg(pub u32);

/// Checks that GDAL knows `EPSG:<code>`, so a bad `--t-srs` fails before any work.
pub fn check_epsg(code: u32) -> Result<(), UnknownEpsg> {
    gdal::spatial_ref::SpatialRef::from_epsg(code)
        .map(|_| ())
        .map_err(|_| UnknownEpsg(code))
}

/// Whether a file in `--out-dir` is a product of an earlier run (replaced by this one).
pub fn is_product(name: &str) -> bool {
    let base = name.strip_suffix(".aux.xml").unwrap_or(name);
    let Some((stem, ext)) = base.rsplit_once('.') else {
        return false;
    };
    // Rasters, and the style files (.qml, .sld) beside them.
    let raster = ext == "tif";
    let style = style::STYLE_EXTENSIONS.contains(&ext);
    let tile_product = (raster || style)
        && ["_class", "_prob", "_probabilities", "_uncertainty"]
            .iter()
            .any(|s| stem.strip_suffix(s).is_some_and(|t| t.parse::<TileId>().is_ok()));
    tile_product
        || (stem.starts_with("mosaic_") && (raster || style || ext == "vrt"))
        || base == "quicklook.png"
        || base == treesits_core::names::STAC_ITEM_FILE
}

/// A mosaic product: per-tile files of one kind, and how their mosaic is made.
struct Product<'a> {
    name: &'static str,
    bands: Vec<VrtBand<'a>>,
    metadata: Vec<(String, String)>,
    /// COG overviews; `None`: VRT only.
    cog: Option<OverviewResampling>,
    /// Also reprojected with `--t-srs`.
    web: bool,
    /// Its style files (`mosaic_<name>.qml`, `.sld`, and for the web mosaic the same).
    style: style::Style<'a>,
}

/// Makes every product from `inputs` into `opts.out_dir`: the tiles, the mosaics, the quicklook,
/// committed together (an earlier run's products in the directory are replaced as a whole).
pub fn run(
    inputs: &[Input],
    stdin: &mut dyn BufRead,
    opts: &MosaicOptions,
) -> Result<MosaicSummary, MosaicError> {
    let started = Instant::now();
    let mut run_state = Run {
        opts,
        dir: PathBuf::new(),
        reference: OnceLock::new(),
        clip: OnceLock::new(),
    };
    let plans = plan_files(&run_state, inputs, opts.allow_partial)?;
    let staged = StagedDir::new(&opts.out_dir).map_err(io_err(&opts.out_dir))?;
    run_state.dir = staged.path().to_path_buf();
    let run = &run_state;

    let (outputs, clipped_away) = write_tiles(run, inputs, stdin, &plans)?;
    let Some(reference) = run.reference.get() else {
        return Err(MosaicError::NoInput);
    };
    if outputs.is_empty() {
        return Err(MosaicError::ClippedAway {
            arg: opts.clip.as_ref().map_or("--clip", |c| c.arg),
            path: opts.clip.as_ref().map_or_else(String::new, |c| c.path.clone()),
        });
    }
    if let Some(params) = &opts.smooth {
        let tiles: Vec<TileId> = outputs.iter().map(|o| o.tile).collect();
        crate::smooth::smooth_tiles(&run.dir, &reference.grid, &reference.classes, &tiles, params)?;
    }
    log::info!(
        "{} tiles written in {:.1} s; building the mosaics",
        outputs.len(),
        started.elapsed().as_secs_f64()
    );
    let mut summary = MosaicSummary {
        tiles: outputs.len(),
        partial_tiles: outputs.iter().filter(|o| o.partial).count(),
        clipped_away_tiles: clipped_away,
        mapped_pixels: outputs.iter().map(|o| o.mapped).sum(),
        ..Default::default()
    };
    let products = mosaic_products(reference, &outputs, opts.class_overviews);
    summary.cog_seconds = write_mosaics(&run.dir, reference, &outputs, &products, opts)?;
    let t = Instant::now();
    crate::quicklook::write_quicklook(
        &run.dir.join("mosaic_class.tif"),
        &crate::quicklook::QuicklookLabels {
            model_id: &reference.model_id,
            classes: &reference.classes,
            dates: *reference
                .dates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        },
        opts.quicklook_px,
        &run.dir.join("quicklook.png"),
    )?;
    log::info!("quicklook.png written in {:.2} s", t.elapsed().as_secs_f64());
    write_stac_item(&run.dir, reference, &outputs)?;
    summary.files = file_names(&run.dir)?;
    staged
        .commit_with(is_product, "quicklook.png")
        .map_err(io_err(&opts.out_dir))?;
    Ok(summary)
}

/// Describes the mosaic files in `dir` in a STAC Item ([`crate::stac`]).
fn write_stac_item(dir: &Path, reference: &Reference, outputs: &[TileOutput]) -> Result<(), MosaicError> {
    let provenance = Provenance::union(outputs.iter().map(|o| &o.provenance)).ok_or(MosaicError::NoInput)?;
    let tiles: Vec<TileId> = outputs.iter().map(|o| o.tile).collect();
    let input = crate::stac::ItemInput {
        grid: &reference.grid,
        tiles: &tiles,
        classes: &reference.classes,
        provenance: &provenance,
    };
    let path = crate::stac::write_item(dir, &input)?;
    log::info!("{} written", path.display());
    Ok(())
}

/// Plans the chunk files first: their metadata alone says whether the tiles are complete and on one
/// grid, so a bad set fails before anything is written.
fn plan_files(run: &Run, inputs: &[Input], allow_partial: bool) -> Result<Vec<TilePlan>, MosaicError> {
    let mut files = Vec::new();
    for input in inputs {
        if let Input::File(path) = input {
            let reader = open_chunk(path)?;
            let meta = reader.metadata().clone();
            run.admit(&meta, &path.display().to_string())?;
            files.push(ChunkFile {
                path: path.clone(),
                meta,
            });
        }
    }
    plan_tiles(files, allow_partial)
}

/// Writes every tile (stdin's streams, then the planned files in parallel), sorted by tile; also
/// says how many tiles `--clip` left out.
fn write_tiles(
    run: &Run,
    inputs: &[Input],
    stdin: &mut dyn BufRead,
    plans: &[TilePlan],
) -> Result<(Vec<TileOutput>, usize), MosaicError> {
    let mut outputs = Vec::new();
    if inputs.contains(&Input::Stdin) {
        let check = WriteCheck::start();
        outputs = stdin_tiles(run, stdin)?;
        check.finish().map_err(|e| MosaicError::WriteFailed {
            file: "the tiles from stdin".into(),
            source: e,
        })?;
        if let Some(dup) = outputs.iter().find(|o| plans.iter().any(|p| p.tile == o.tile)) {
            return Err(MosaicError::Mismatch(format!(
                "tile {} comes both on stdin and in chunk files; give it once",
                dup.tile
            )));
        }
    }
    let from_files = plans
        .par_iter()
        .map(|p| write_file_tile(run, p))
        .collect::<Result<Vec<_>, _>>()?;
    let clipped_away = from_files.iter().filter(|o| o.is_none()).count();
    outputs.extend(from_files.into_iter().flatten());
    outputs.sort_by_key(|o| o.tile);
    Ok((outputs, clipped_away))
}

/// The mosaics to build: class and probability always; uncertainty and per-class probabilities when
/// every tile carries them.
fn mosaic_products<'a>(
    reference: &'a Reference,
    outputs: &[TileOutput],
    class_overviews: OverviewResampling,
) -> Vec<Product<'a>> {
    let classes = &reference.classes;
    let provenance = Provenance::union(outputs.iter().map(|o| &o.provenance)).expect("at least one tile");
    let class_meta = vrt::class_metadata(classes, &provenance);
    let uint16 = |description: String, source_band: usize| VrtBand {
        data_type: "UInt16",
        nodata: f64::from(PROB_NODATA),
        description,
        source_band,
        classes: None,
        scale_offset: Some((style::PROBABILITY_SCALE, style::PROBABILITY_OFFSET)),
    };
    let mut products = vec![
        Product {
            name: "class",
            bands: vec![VrtBand {
                data_type: "Byte",
                nodata: f64::from(CLASS_NODATA),
                description: "class".into(),
                source_band: 1,
                classes: Some(classes),
                scale_offset: None,
            }],
            metadata: class_meta.clone(),
            cog: Some(class_overviews),
            web: true,
            style: style::Style::Classes(classes),
        },
        Product {
            name: "prob",
            bands: vec![uint16("probability of the class (0-1)".into(), 1)],
            metadata: class_meta.clone(),
            cog: Some(OverviewResampling::Average),
            web: true,
            style: style::Style::Ramp { title: "probability" },
        },
    ];
    let all = |f: fn(&TileOutput) -> bool| outputs.iter().all(f);
    let some = |f: fn(&TileOutput) -> bool| outputs.iter().any(f);
    if all(|o| o.uncertainty) {
        products.push(Product {
            name: "uncertainty",
            bands: vec![uint16("uncertainty (0-1)".into(), 1)],
            metadata: class_meta.clone(),
            cog: Some(OverviewResampling::Average),
            web: false,
            style: style::Style::Ramp { title: "uncertainty" },
        });
    } else if some(|o| o.uncertainty) {
        log::warn!(
            "only some tiles carry uncertainty: no uncertainty mosaic (the tiles' own files are written)"
        );
    }
    if all(|o| o.probabilities) {
        products.push(Product {
            name: "probabilities",
            bands: classes
                .iter()
                .enumerate()
                .map(|(i, c)| uint16(format!("probability of {} (0-1)", c.name), i + 1))
                .collect(),
            metadata: class_meta,
            cog: None,
            web: false,
            style: style::Style::Ramp { title: "probability" },
        });
    } else if some(|o| o.probabilities) {
        log::warn!("only some tiles carry per-class probabilities: no per-class mosaic (the tiles' own files are written)");
    }
    products
}

/// Writes each product's VRT over the tiles and, where it has one, its COG (and the reprojected web
/// COG); returns (COG file, seconds to build it).
fn write_mosaics(
    dir: &Path,
    reference: &Reference,
    outputs: &[TileOutput],
    products: &[Product],
    opts: &MosaicOptions,
) -> Result<Vec<(String, f64)>, MosaicError> {
    let mut cog_seconds = Vec::new();
    for p in products {
        let tiles = VrtTiles {
            grid: &reference.grid,
            tiles: outputs
                .iter()
                .map(|o| (o.tile, tile_file(o.tile, p.name)))
                .collect(),
            block: (TILE_BLOCK, TILE_BLOCK),
        };
        let vrt_path = dir.join(format!("mosaic_{}.vrt", p.name));
        std::fs::write(&vrt_path, vrt::mosaic_vrt(&tiles, &p.bands, &p.metadata))
            .map_err(io_err(&vrt_path))?;
        // One style serves mosaic_<name>.vrt and mosaic_<name>.tif (QGIS looks for <base>.qml).
        let base = format!("mosaic_{}", p.name);
        style::write_styles(dir, &base, p.style).map_err(io_err(&dir.join(&base)))?;
        let Some(resampling) = p.cog else { continue };
        let mut targets = vec![(format!("{base}.tif"), None)];
        if let (Some(epsg), true) = (opts.t_srs, p.web) {
            let web = format!("{base}_epsg{epsg}");
            style::write_styles(dir, &web, p.style).map_err(io_err(&dir.join(&web)))?;
            targets.push((format!("{web}.tif"), Some(epsg)));
        }
        for (name, epsg) in targets {
            let options = CogOptions {
                overview_resampling: resampling,
                threads: opts.threads,
                target_epsg: epsg,
            };
            let secs = write_cog_timed(&vrt_path, &dir.join(&name), &options)?;
            log::info!("{name}: COG built in {secs:.2} s");
            cog_seconds.push((name, secs));
        }
    }
    Ok(cog_seconds)
}

fn write_cog_timed(vrt: &Path, out: &Path, options: &CogOptions) -> Result<f64, MosaicError> {
    let t = Instant::now();
    let name = out
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    // scripts/bench-mosaic reads this line to run gdal_translate with the same options.
    log::debug!(
        "COG options for {name}: {}",
        options
            .creation_options()
            .iter()
            .map(|o| format!("-co {o}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    cog::write_cog(vrt, out, options).map_err(write_err(name))?;
    Ok(t.elapsed().as_secs_f64())
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Result<Vec<String>, MosaicError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_inclusive_row_ranges() {
        let covered = [true, false, false, true, false];
        assert_eq!(gaps(&covered), vec![(1, 2), (4, 4)]);
        assert_eq!(format_rows(&gaps(&covered)), "rows 1-2, 4");
        assert_eq!(format_rows(&[(7, 7)]), "row 7");
        assert!(gaps(&[true, true]).is_empty());
    }

    #[test]
    fn products_of_earlier_runs_are_recognised() {
        for n in [
            "X0001_Y0002_class.tif",
            "X0001_Y0002_class.tif.aux.xml",
            "mosaic_class_epsg3857.tif",
            "mosaic_prob.vrt",
            "mosaic_class.qml",
            "mosaic_class_epsg3857.sld",
            "X0001_Y0002_uncertainty.qml",
            "X0001_Y0002_prob.sld",
            "quicklook.png",
            "mosaic.stac.json",
        ] {
            assert!(is_product(n), "{n}");
        }
        for n in [
            "notes.txt",
            "my_class.tif",
            "my_class.qml",
            "X0001_Y0002_chunk0000.pred.arrows",
            "X0001_Y0002_class.txt",
            "mosaic_notes.txt",
        ] {
            assert!(!is_product(n), "{n}");
        }
    }

    #[test]
    fn the_grid_is_recovered_from_a_tile_geotransform() {
        let m = ChunkMetadata {
            tile_id: TileId::new(982, 858),
            geotransform: [4_420_026.25, 10.0, 0.0, 2_858_919.5, 0.0, -10.0],
            tile_size: (200, 200),
            window: PixelWindow::new(0, 0, 200, 200),
            chunk_index: None,
            chunk_count: 4,
            ..ChunkMetadata::example()
        };
        let g = grid_from_chunk(&m).unwrap();
        assert_eq!(g.definition.origin_map, (2_456_026.25, 4_574_919.5));
        assert_eq!(g.geotransform(TileId::new(982, 858)), m.geotransform);
        assert_eq!(g.geotransform(TileId::new(983, 858))[0], 4_422_026.25);
        let mut rotated = m.clone();
        rotated.geotransform[2] = 0.5;
        assert!(grid_from_chunk(&rotated)
            .unwrap_err()
            .to_string()
            .contains("north-up"));
    }
}
