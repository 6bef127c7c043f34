//! A FORCE tile on disk or on S3: finding its Level-2 files, checking they agree, reading them by blocks.
//!
//! [`scan_tile`] lists the tile directory through GDAL's virtual file system (so `/vsis3/` works as well
//! as local paths), pairs every BOA with its QAI and opens each file once to check grid, band count and
//! type. [`ChunkReader`] then turns a band of tile rows into [`ChunkColumns`]; each worker thread owns
//! one reader and so its own dataset handles (GDAL datasets are not `Sync`).

use std::path::Path;

use gdal::raster::GdalDataType;
use gdal::{Dataset, Metadata};
use treesits_core::chunk::ChunkColumns;
use treesits_core::level2::{invalid_date, pair_level2_files, BandError, BandMap, Level2Pair};
use treesits_core::{CubeDefinition, Date, PixelWindow, Product, QaiScreen, Sensor, TileId};

use treesits_core::names::CUBE_DEFINITION_FILE;
use treesits_core::Location;
use treesits_gdal::cube_definition::{read_cube_definition_if_present, CubeDefinitionError};
use treesits_gdal::listing::{list_files, FileEntry, ListError};

use crate::split::{self, batch_bytes, Part, Spill, SpillWriter};

#[derive(Debug, thiserror::Error)]
pub enum CubeError {
    #[error("{0}: not a FORCE tile directory (expected a name like X0058_Y0056)")]
    NotATile(String),
    #[error(transparent)]
    List(#[from] ListError),
    #[error("{0}: no BOA files for the selected sensors and dates")]
    Empty(String),
    #[error(
        "{location}: its Level-2 files are ENVI ({example}), which is not read: convert them to GeoTIFF \
         with the same names (gdal_translate -of GTiff X_BOA.dat X_BOA.tif; docs/formats.md, \"Level-2 \
         files\")"
    )]
    Envi { location: String, example: String },
    #[error("{boa}: BOA file has no QAI file ({qai} is missing)")]
    MissingQai { boa: String, qai: String },
    #[error("cannot open {path} (missing, truncated or not a GeoTIFF?)")]
    Open {
        path: String,
        source: gdal::errors::GdalError,
    },
    #[error("cannot read {what} of {path} (truncated or corrupt file?)")]
    Read {
        path: String,
        what: String,
        source: gdal::errors::GdalError,
    },
    #[error("{path}: {problem}")]
    Mismatch { path: String, problem: String },
    #[error(transparent)]
    CubeDefinition(#[from] CubeDefinitionError),
    #[error("{location}: {source}")]
    Bands { location: String, source: BandError },
    #[error(
        "cannot write a temporary spill file in {dir} (disk full? free space there or give --memory more)"
    )]
    Spill { dir: String, source: std::io::Error },
}

/// Which files of a tile to use.
#[derive(Debug, Clone)]
pub struct TileSelection {
    pub start: Date,
    pub end: Date,
    pub sensors: Vec<Sensor>,
}

/// One acquisition of a tile: its BOA and QAI files.
#[derive(Debug, Clone, PartialEq)]
pub struct AcquisitionFiles {
    pub date: Date,
    pub sensor: Sensor,
    pub boa: Location,
    pub qai: Location,
}

/// A checked tile: every selected acquisition, sorted by (date, sensor code), all on one grid.
#[derive(Debug, Clone)]
pub struct TileScan {
    pub tile: TileId,
    pub location: Location,
    pub acquisitions: Vec<AcquisitionFiles>,
    /// Columns, rows.
    pub size: (usize, usize),
    /// Bands of the series (what each observation holds), named by `band_names`.
    pub bands: usize,
    pub band_names: Vec<String>,
    /// Which band of each sensor's BOA file holds each of `band_names`.
    pub band_map: BandMap,
    /// Block shape (columns, rows) of the BOA files.
    pub block: (usize, usize),
    /// Bands decoded with each block: 1 for band-interleaved files, all of a file's bands for
    /// pixel-interleaved ones (COGs written by GDAL < 3.11); the most of any BOA file.
    pub block_bands: usize,
    pub geotransform: [f64; 6],
    pub crs_wkt: String,
    /// The cube's `datacube-definition.prj`, when the tile's parent directory has one.
    pub cube: Option<CubeDefinition>,
}

fn open(loc: &Location) -> Result<Dataset, CubeError> {
    Dataset::open(Path::new(&loc.gdal_path())).map_err(|source| CubeError::Open {
        path: loc.to_string(),
        source,
    })
}

fn mismatch(loc: &Location, problem: String) -> CubeError {
    CubeError::Mismatch {
        path: loc.to_string(),
        problem,
    }
}

/// What is wrong with a mask whose geotransform `gt` is not tile `tile`'s (`tile_gt`, `size` pixels),
/// and what to do: the other tile of the same cube grid it is on, or, off the grid, how to warp it.
fn mask_grid_problem(gt: &[f64; 6], tile_gt: &[f64; 6], size: (usize, usize), tile: TileId) -> String {
    let res = tile_gt[1];
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0);
    let same_pixels = near(gt[1], res) && near(gt[5], tile_gt[5]) && gt[2] == 0.0 && gt[4] == 0.0;
    let dx = (gt[0] - tile_gt[0]) / (size.0 as f64 * res);
    let dy = (tile_gt[3] - gt[3]) / (size.1 as f64 * tile_gt[5].abs());
    let whole = |d: f64| d.is_finite() && (d - d.round()).abs() < 1e-6 && d.abs() < 10_000.0;
    if same_pixels && whole(dx) && whole(dy) {
        let other = TileId::new(tile.x + dx.round() as i32, tile.y + dy.round() as i32);
        return format!(
            "the mask is on tile {other}'s grid, not tile {tile}'s: give tile {tile}'s mask \
             (aoi-select writes one per tile), or make it with aoi-select for this cube"
        );
    }
    let (x0, y1) = (tile_gt[0], tile_gt[3]);
    let (x1, y0) = (x0 + size.0 as f64 * res, y1 - size.1 as f64 * tile_gt[5].abs());
    format!(
        "the mask's geotransform (origin {}, {}, pixels {} x {}) is not on tile {tile}'s grid (origin \
         {x0}, {y1}, pixels {res} x {}): make the mask with aoi-select for this cube, or warp it onto the \
         tile with gdalwarp -te {x0} {y0} {x1} {y1} -tr {res} {res} -r near",
        gt[0],
        gt[3],
        gt[1],
        gt[5].abs(),
        tile_gt[5].abs()
    )
}

fn same_geotransform(a: &[f64; 6], b: &[f64; 6]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0))
}

/// The acquisitions among a tile directory's files that `sel` selects, in observation order
/// (date, sensor code). A selected BOA without its QAI is an error; a QAI without its BOA is skipped.
pub fn select_acquisitions(
    location: &Location,
    files: &[FileEntry],
    sel: &TileSelection,
) -> Result<Vec<AcquisitionFiles>, CubeError> {
    select_pairs(
        location,
        pair_files(location, files, &sel.sensors),
        sel.start,
        sel.end,
    )
}

/// The BOA/QAI pairs of the given sensors among a tile directory's files, in observation order.
pub fn pair_files(location: &Location, files: &[FileEntry], sensors: &[Sensor]) -> Vec<Level2Pair> {
    let (pairs, skipped) = pair_level2_files(files.iter().map(|f| f.name.as_str()), sensors);
    let mut bad_dates = Vec::new();
    for name in skipped {
        match invalid_date(name) {
            Some(reason) => bad_dates.push(format!("{name} ({reason})")),
            None => log::debug!("{location}: skipping {name} (not a Level-2 file name)"),
        }
    }
    if !bad_dates.is_empty() {
        // Once per tile: one line naming every such file.
        log::warn!(
            "{location}: skipping {} file{} named like Level-2 files but without a valid date: {}",
            bad_dates.len(),
            if bad_dates.len() == 1 { "" } else { "s" },
            bad_dates.join(", ")
        );
    }
    pairs
}

/// The pairs dated `start..=end` as acquisitions (see [`select_acquisitions`]).
pub fn select_pairs(
    location: &Location,
    pairs: Vec<Level2Pair>,
    start: Date,
    end: Date,
) -> Result<Vec<AcquisitionFiles>, CubeError> {
    let mut acquisitions = Vec::new();
    for pair in pairs {
        if pair.date < start || pair.date > end {
            continue;
        }
        match (pair.boa, pair.qai) {
            (Some(boa), Some(qai)) => acquisitions.push(AcquisitionFiles {
                date: boa.date,
                sensor: boa.sensor,
                boa: location.join(&boa.to_string()),
                qai: location.join(&qai.to_string()),
            }),
            (Some(boa), None) => {
                return Err(CubeError::MissingQai {
                    boa: location.join(&boa.to_string()).to_string(),
                    qai: boa.with_product(Product::Qai).to_string(),
                })
            }
            (None, Some(qai)) => log::warn!("{location}: ignoring {qai}: no BOA file for it"),
            (None, None) => {}
        }
    }
    Ok(acquisitions)
}

/// Whether `name` is a FORCE Level-2 file of one of `sensors` in ENVI format (`…_BOA.dat`, or its
/// `.hdr`), which the scan does not read.
fn is_envi_level2(name: &str, sensors: &[Sensor]) -> bool {
    let Some(stem) = name
        .strip_suffix(".dat")
        .or_else(|| name.strip_suffix(".hdr"))
        .or_else(|| name.strip_suffix(".DAT"))
    else {
        return false;
    };
    treesits_core::Level2Name::parse(&format!("{stem}.tif"))
        .is_ok_and(|l2| sensors.contains(&l2.sensor) && matches!(l2.product, Product::Boa | Product::Qai))
}

/// Lists, pairs and checks the files of one tile, for every band of the first acquisition's sensor
/// (so the selected sensors must share one band set).
pub fn scan_tile(location: &Location, sel: &TileSelection) -> Result<TileScan, CubeError> {
    scan_tile_bands(location, sel, None)
}

/// [`scan_tile`] for the bands named `bands` (FORCE's names, in output order), read from each
/// sensor's own band of that name, so sensors with different band sets (Landsat and Sentinel-2) make
/// one series; `None`: every band of the first acquisition's sensor.
pub fn scan_tile_bands(
    location: &Location,
    sel: &TileSelection,
    bands: Option<&[String]>,
) -> Result<TileScan, CubeError> {
    let name = location.file_name().unwrap_or_default().to_string();
    let tile: TileId = name
        .parse()
        .map_err(|_| CubeError::NotATile(location.to_string()))?;
    let files = list_files(location)?;
    let acquisitions = select_acquisitions(location, &files, sel)?;
    let envi: Vec<&str> = files
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| is_envi_level2(n, &sel.sensors))
        .collect();
    if acquisitions.is_empty() {
        return Err(match envi.first() {
            Some(example) => CubeError::Envi {
                location: location.to_string(),
                example: example.to_string(),
            },
            None => CubeError::Empty(location.to_string()),
        });
    }
    if !envi.is_empty() {
        log::warn!(
            "{location}: skipping {} ENVI Level-2 file{} ({}, …): only GeoTIFF Level-2 files are read",
            envi.len(),
            if envi.len() == 1 { "" } else { "s" },
            envi[0]
        );
    }

    // Every file opened once, here, so a bad one is named before any work starts.
    let first = open(&acquisitions[0].boa)?;
    let size = first.raster_size();
    let geotransform = first.geo_transform().map_err(|source| CubeError::Read {
        path: acquisitions[0].boa.to_string(),
        what: "the geotransform".into(),
        source,
    })?;
    let crs_wkt = first.projection();
    let block = first
        .rasterband(1)
        .map_err(|source| CubeError::Read {
            path: acquisitions[0].boa.to_string(),
            what: "band 1".into(),
            source,
        })?
        .block_size();
    drop(first);
    let names: Vec<String> = match bands {
        Some(b) => b.to_vec(),
        None => acquisitions[0]
            .sensor
            .bands()
            .iter()
            .map(|b| b.to_string())
            .collect(),
    };
    let mut sensors: Vec<Sensor> = acquisitions.iter().map(|a| a.sensor).collect();
    sensors.sort_by_key(|s| s.code());
    sensors.dedup();
    let band_map = BandMap::new(&sensors, &names).map_err(|source| CubeError::Bands {
        location: location.to_string(),
        source,
    })?;
    let mut block_bands = 1;
    for acq in &acquisitions {
        let want_bands = acq.sensor.bands().len();
        for (loc, want_bands) in [(&acq.boa, want_bands), (&acq.qai, 1)] {
            let ds = open(loc)?;
            if ds.raster_size() != size {
                return Err(mismatch(
                    loc,
                    format!(
                        "{} x {} pixels, but {} has {} x {}: files of one tile must share one grid",
                        ds.raster_size().0,
                        ds.raster_size().1,
                        acquisitions[0].boa,
                        size.0,
                        size.1
                    ),
                ));
            }
            let gt = ds.geo_transform().map_err(|source| CubeError::Read {
                path: loc.to_string(),
                what: "the geotransform".into(),
                source,
            })?;
            if !same_geotransform(&gt, &geotransform) {
                return Err(mismatch(
                    loc,
                    format!(
                        "geotransform {gt:?} differs from {geotransform:?} of {}",
                        acquisitions[0].boa
                    ),
                ));
            }
            if ds.raster_count() != want_bands {
                return Err(mismatch(
                    loc,
                    format!(
                        "{} bands, expected {want_bands} for {}",
                        ds.raster_count(),
                        acq.sensor
                    ),
                ));
            }
            if ds.metadata_item("INTERLEAVE", "IMAGE_STRUCTURE").as_deref() == Some("PIXEL") {
                block_bands = block_bands.max(want_bands);
            }
            let band = ds.rasterband(1).map_err(|source| CubeError::Read {
                path: loc.to_string(),
                what: "band 1".into(),
                source,
            })?;
            if band.band_type() != GdalDataType::Int16 {
                return Err(mismatch(
                    loc,
                    format!("data type {:?}, expected Int16", band.band_type()),
                ));
            }
        }
    }
    let cube = read_cube_definition(location)?;
    Ok(TileScan {
        tile,
        location: location.clone(),
        acquisitions,
        size,
        bands: band_map.len(),
        band_names: band_map.names().to_vec(),
        band_map,
        block,
        block_bands,
        geotransform,
        crs_wkt,
        cube,
    })
}

/// Reads `../datacube-definition.prj` of a tile (either form; local or on S3) when there is one, for
/// [`TileScan::check_cube_definition`].
fn read_cube_definition(tile: &Location) -> Result<Option<CubeDefinition>, CubeError> {
    let prj = tile.sibling(CUBE_DEFINITION_FILE);
    let def = read_cube_definition_if_present(&prj)?;
    if def.is_none() {
        log::debug!("{prj} not found: relying on the files' own georeferencing");
    }
    Ok(def)
}

impl TileScan {
    /// The 1-based band numbers in a BOA file of `sensor` that hold [`TileScan::band_names`], in order.
    pub fn boa_bands(&self, sensor: Sensor) -> &[usize] {
        self.band_map
            .numbers(sensor)
            .expect("the band map covers every sensor of the scan")
    }

    /// Checks that the cube definition (if found) places this tile where its files say it is.
    pub fn check_cube_definition(&self) -> Result<(), CubeError> {
        let Some(def) = &self.cube else { return Ok(()) };
        let e = def.tile_extent(self.tile);
        let (x, y) = (self.geotransform[0], self.geotransform[3]);
        let tol = self.geotransform[1].abs() * 1e-3;
        if (x - e.xmin).abs() > tol || (y - e.ymax).abs() > tol {
            return Err(mismatch(
                &self.acquisitions[0].boa,
                format!(
                    "origin ({x}, {y}) is not the corner ({}, {}) of tile {} in {}",
                    e.xmin,
                    e.ymax,
                    self.tile,
                    self.location.sibling(CUBE_DEFINITION_FILE)
                ),
            ));
        }
        Ok(())
    }

    /// Bands of `rows` tile rows, full width, the last one possibly shorter.
    pub fn chunk_windows(&self, rows: usize) -> Vec<PixelWindow> {
        let step = rows.max(1);
        (0..self.size.1)
            .step_by(step)
            .map(|row| PixelWindow {
                row,
                col: 0,
                rows: step.min(self.size.1 - row),
                cols: self.size.0,
            })
            .collect()
    }

    /// Checks a mask raster: one Byte band on this tile's exact grid.
    pub fn check_mask(&self, mask: &Location) -> Result<(), CubeError> {
        let ds = open(mask)?;
        if ds.raster_size() != self.size {
            return Err(mismatch(
                mask,
                format!(
                    "mask is {} x {} pixels but tile {} is {} x {}",
                    ds.raster_size().0,
                    ds.raster_size().1,
                    self.tile,
                    self.size.0,
                    self.size.1
                ),
            ));
        }
        let gt = ds.geo_transform().map_err(|source| CubeError::Read {
            path: mask.to_string(),
            what: "the geotransform".into(),
            source,
        })?;
        if !same_geotransform(&gt, &self.geotransform) {
            return Err(mismatch(
                mask,
                mask_grid_problem(&gt, &self.geotransform, self.size, self.tile),
            ));
        }
        let t = ds
            .rasterband(1)
            .map_err(|source| CubeError::Read {
                path: mask.to_string(),
                what: "band 1".into(),
                source,
            })?
            .band_type();
        if t != GdalDataType::UInt8 {
            return Err(mismatch(mask, format!("mask must be Byte, not {t:?}")));
        }
        Ok(())
    }
}

/// How many datasets all workers together keep open between chunks by default (file descriptors and
/// the TIFF directories GDAL holds per handle). Acquisitions beyond a worker's share are opened for
/// each chunk and closed right after.
pub const MAX_OPEN_DATASETS: usize = 512;

/// Reads chunks of one tile. Not `Sync`: give each worker thread its own (`map_init`).
///
/// Per chunk it reads every QAI window once (screening), then the BOA bands of the acquisitions with
/// any valid pixel once, a group of acquisitions band by band, and merges each band of a group into
/// the pixel-major output in one pass (pixel-interleaved files: all bands of an acquisition in a row,
/// see `merge_group`). Memory: the output, one bit per (acquisition, pixel) and one group's band
/// windows (one band each; every band for pixel-interleaved files) with its merge program (8 bytes
/// per observation): together at most an eighth of the size of the chunk's band values, or
/// [`MIN_GROUP_BYTES`] if that is more, and always at least one acquisition.
pub struct ChunkReader<'a> {
    scan: &'a TileScan,
    screen: &'a QaiScreen,
    mask: Option<(&'a Location, Option<Dataset>)>,
    /// Handles of the first `keep_open` acquisitions stay open across chunks: (BOA, QAI).
    datasets: Vec<(Option<Dataset>, Option<Dataset>)>,
    keep_open: usize,
    qai: Vec<i16>,
    band: Vec<i16>,
    mask_values: Vec<u8>,
    /// One band window of each acquisition of a group, side by side.
    windows: Vec<i16>,
    /// (output position, index into `windows`) of a group's observations, in output order.
    program: Vec<(u32, u32)>,
    /// One bit per (acquisition, pixel): valid after screening.
    valid: Vec<u64>,
    /// Per pixel: its valid observations, then the next output position.
    cursor: Vec<u32>,
    /// Fixed group budget in bytes instead of [`group_budget`] (tests, benchmarks).
    group_bytes: Option<usize>,
    /// Most bytes of one record batch ([`batch_bytes`]) in [`ChunkReader::read_batches`]; `None`:
    /// a window is always one batch.
    batch_limit: Option<usize>,
    /// Where strip windows split into several batches spill their values (see [`crate::split`]).
    spill_dir: std::path::PathBuf,
}

/// Which pixels are valid on which acquisition (`words` u64 per acquisition, one bit per pixel), and
/// where their values come from.
#[derive(Clone, Copy)]
struct Validity<'v> {
    valid: &'v [u64],
    words: usize,
    values: Values<'v>,
}

/// Empties `out` (keeping its memory) and fills the positions of the window's `n` selected pixels.
fn start_columns(
    out: &mut ChunkColumns,
    w: &PixelWindow,
    n: usize,
    bands: usize,
    pixel: &impl Fn(usize) -> usize,
) {
    out.row.clear();
    out.row.extend((0..n).map(|i| (w.row + pixel(i) / w.cols) as u32));
    out.col.clear();
    out.col.extend((0..n).map(|i| (w.col + pixel(i) % w.cols) as u32));
    out.offsets.clear();
    out.offsets.push(0);
    out.date.clear();
    out.sensor.clear();
    out.bands.resize_with(bands, Vec::new);
    out.bands.iter_mut().for_each(Vec::clear);
}

/// Offsets from the per-pixel counts in `cursor`, which then hold each pixel's first output
/// position; the value columns are sized to the total, which is returned.
fn size_columns(out: &mut ChunkColumns, cursor: &mut [u32]) -> usize {
    let mut total = 0u32;
    for c in cursor.iter_mut() {
        let count = *c;
        *c = total;
        total += count;
        out.offsets.push(total as i32);
    }
    let total = total as usize;
    out.date.resize(total, 0);
    out.sensor.resize(total, 0);
    for b in &mut out.bands {
        b.resize(total, 0);
    }
    total
}

/// Consecutive groups of the `used` acquisitions whose band windows (`window_len` values each) and
/// merge program (one entry per valid observation, `obs[k]`) fit `budget` bytes, at most
/// [`MAX_GROUP`] acquisitions each.
fn acquisition_groups<'u>(
    used: &'u [usize],
    obs: &[usize],
    window_len: usize,
    budget: usize,
) -> Vec<&'u [usize]> {
    let per_acq = window_len * std::mem::size_of::<i16>();
    let per_obs = std::mem::size_of::<(u32, u32)>();
    let mut groups = Vec::new();
    let mut first = 0;
    while first < used.len() {
        let mut end = first + 1;
        let mut group_obs = obs[used[first]];
        while end < used.len()
            && end - first < MAX_GROUP
            && (end + 1 - first) * per_acq + (group_obs + obs[used[end]]) * per_obs <= budget
        {
            group_obs += obs[used[end]];
            end += 1;
        }
        groups.push(&used[first..end]);
        first = end;
    }
    groups
}

/// Where `merge_group` takes a group's band values from.
#[derive(Clone, Copy)]
enum Values<'s> {
    /// Read from the BOA files, one window per acquisition and band.
    Tiff,
    /// From a window's spill: each acquisition's valid values only, in pixel order.
    Spill(&'s Spill),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum File {
    Boa,
    Qai,
}

fn read_into<T: gdal::raster::GdalType + Copy>(
    ds: &Dataset,
    loc: &Location,
    band: usize,
    w: &PixelWindow,
    buf: &mut Vec<T>,
    zero: T,
) -> Result<(), CubeError> {
    let what = || format!("band {band}, rows {}..{}", w.row, w.row + w.rows);
    let err = |source| CubeError::Read {
        path: loc.to_string(),
        what: what(),
        source,
    };
    buf.resize(w.len(), zero);
    // The buffer has the window's own size, so GDAL reads the full-resolution image and never one of
    // the overviews a COG carries.
    ds.rasterband(band)
        .map_err(err)?
        .read_into_slice(
            (w.col as isize, w.row as isize),
            (w.cols, w.rows),
            (w.cols, w.rows),
            buf,
            None,
        )
        .map_err(err)
}

/// Bytes of band windows and merge program (see [`ChunkReader::read_reusing`]) a worker may hold
/// for one group of acquisitions by default: an eighth of the chunk's band values, at least
/// [`MIN_GROUP_BYTES`]. Larger groups stream through the output fewer times.
fn group_budget(observations: usize, bands: usize) -> usize {
    (observations * bands * std::mem::size_of::<i16>() / 8).max(MIN_GROUP_BYTES)
}

/// See [`group_budget`].
pub const MIN_GROUP_BYTES: usize = 8 << 20;

/// Most acquisitions in one group: their BOA files are open together while the group is read.
pub const MAX_GROUP: usize = 32;

impl<'a> ChunkReader<'a> {
    /// A reader that keeps the datasets of at most `keep_open` acquisitions open between chunks (the
    /// rest are opened per chunk); see [`MAX_OPEN_DATASETS`].
    pub fn new(
        scan: &'a TileScan,
        screen: &'a QaiScreen,
        mask: Option<&'a Location>,
        keep_open: usize,
    ) -> ChunkReader<'a> {
        ChunkReader {
            scan,
            screen,
            mask: mask.map(|m| (m, None)),
            datasets: (0..scan.acquisitions.len()).map(|_| (None, None)).collect(),
            keep_open,
            qai: Vec::new(),
            band: Vec::new(),
            mask_values: Vec::new(),
            windows: Vec::new(),
            program: Vec::new(),
            valid: Vec::new(),
            cursor: Vec::new(),
            group_bytes: None,
            batch_limit: None,
            spill_dir: std::env::temp_dir(),
        }
    }

    /// Splits windows whose columns would exceed `limit` bytes ([`batch_bytes`]) into several
    /// record batches in [`ChunkReader::read_batches`]; strip files spill through unnamed temporary
    /// files in `spill_dir` (removed by the system even when the process is killed).
    pub fn with_batch_limit(mut self, limit: Option<usize>, spill_dir: &Path) -> ChunkReader<'a> {
        self.batch_limit = limit;
        self.spill_dir = spill_dir.to_path_buf();
        self
    }

    /// Groups acquisitions by at most `bytes` of gathered values and merge program instead of the
    /// default budget (a chunk's eighth, at least [`MIN_GROUP_BYTES`]); a group always holds at
    /// least one acquisition, so 1 gives one acquisition per group. The output does not depend on it.
    pub fn with_group_bytes(mut self, bytes: Option<usize>) -> ChunkReader<'a> {
        self.group_bytes = bytes;
        self
    }

    /// The number of acquisitions (two datasets each) each of `threads` workers may keep open when
    /// all of them together may keep `max_open` datasets open.
    pub fn keep_open_per_worker(max_open: usize, threads: usize) -> usize {
        max_open / 2 / threads.max(1)
    }

    /// Reads `band` of acquisition `k`'s BOA or QAI window into `buf`, opening the file if needed
    /// and closing it again if it is not one of those kept open.
    fn read_file(
        &mut self,
        k: usize,
        file: File,
        band: usize,
        w: &PixelWindow,
        into_band_buffer: bool,
    ) -> Result<(), CubeError> {
        let acq = &self.scan.acquisitions[k];
        let loc = if file == File::Boa { &acq.boa } else { &acq.qai };
        let slot = match file {
            File::Boa => &mut self.datasets[k].0,
            File::Qai => &mut self.datasets[k].1,
        };
        if slot.is_none() {
            *slot = Some(open(loc)?);
        }
        let ds = slot.as_ref().expect("just opened");
        let buf = if into_band_buffer {
            &mut self.band
        } else {
            &mut self.qai
        };
        read_into(ds, loc, band, w, buf, 0)
    }

    /// Closes acquisition `k`'s `file` unless it is kept open.
    fn release(&mut self, k: usize, file: File) {
        if k >= self.keep_open {
            match file {
                File::Boa => self.datasets[k].0 = None,
                File::Qai => self.datasets[k].1 = None,
            }
        }
    }

    /// Which pixels of the window to process (indices into the window, row-major); `None`: all.
    fn selected(&mut self, w: &PixelWindow) -> Result<Option<Vec<u32>>, CubeError> {
        let Some((loc, ds)) = &mut self.mask else {
            return Ok(None);
        };
        if ds.is_none() {
            *ds = Some(open(loc)?);
        }
        let ds = ds.as_ref().expect("just opened");
        read_into(ds, loc, 1, w, &mut self.mask_values, 0)?;
        Ok(Some(
            self.mask_values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v == 1)
                .map(|(i, _)| i as u32)
                .collect(),
        ))
    }

    /// Reads one window: the selected pixels with their observations that pass the screen, in
    /// (date, sensor) order (the acquisitions are sorted so, and each pixel's list is filled in
    /// acquisition order, so nothing is sorted per pixel).
    pub fn read(&mut self, w: &PixelWindow) -> Result<ChunkColumns, CubeError> {
        self.read_reusing(w, ChunkColumns::default())
    }

    /// [`ChunkReader::read`] into the vectors of `spare` (their contents are dropped, their memory
    /// reused), typically the columns of the previous chunk back from
    /// [`treesits_core::chunk::ChunkWriter::write_recycling`]: memory that is already paged in.
    pub fn read_reusing(&mut self, w: &PixelWindow, spare: ChunkColumns) -> Result<ChunkColumns, CubeError> {
        let selected = self.selected(w)?;
        self.read_selected(w, selected, spare)
    }

    /// [`ChunkReader::read_reusing`] of only the given pixels of the window (indices into the
    /// window, row-major, ascending, no repeats), instead of the mask's: the same reads, screen and
    /// merge, so each pixel's series is the one a whole-window read gives it (`sample-extract`).
    pub fn read_pixels(
        &mut self,
        w: &PixelWindow,
        pixels: Vec<u32>,
        spare: ChunkColumns,
    ) -> Result<ChunkColumns, CubeError> {
        debug_assert!(pixels.windows(2).all(|p| p[0] < p[1]));
        debug_assert!(pixels.last().is_none_or(|&p| (p as usize) < w.len()));
        self.read_selected(w, Some(pixels), spare)
    }

    fn read_selected(
        &mut self,
        w: &PixelWindow,
        selected: Option<Vec<u32>>,
        spare: ChunkColumns,
    ) -> Result<ChunkColumns, CubeError> {
        let n = selected.as_ref().map_or(w.len(), Vec::len);
        let pixel = |i: usize| selected.as_ref().map_or(i, |s| s[i] as usize);
        let mut out = spare;
        if n == 0 {
            // Nothing of this window is in the mask: no file is read.
            start_columns(&mut out, w, 0, self.scan.bands, &pixel);
            return Ok(out);
        }
        let mut valid = std::mem::take(&mut self.valid);
        let mut cursor = std::mem::take(&mut self.cursor);
        self.screen_pass(w, n, &pixel, &mut valid, &mut cursor)?;
        let filled = self.fill(w, &pixel, &valid, &mut cursor, out, Values::Tiff);
        self.valid = valid;
        self.cursor = cursor;
        filled
    }

    /// Reads one window as record batches of at most the reader's batch limit ([`batch_bytes`],
    /// [`ChunkReader::with_batch_limit`]), handing each to `emit`, which gives back columns to fill
    /// next; returns the last of those. A window that fits is one batch, the same as
    /// [`ChunkReader::read_reusing`] gives. Otherwise the window is cut into column ranges (whole
    /// blocks of tiled files), each a batch of its pixels in row-major order, after one screening
    /// pass over the whole window: tiled files are then read range by range, each block decoded
    /// once; a strip (one block across the whole window) is decoded once per band and acquisition
    /// and its valid values spilled range by range to temporary files, from which each range is
    /// merged ([`crate::split`]). Each pixel's series is the same however the window is cut.
    pub fn read_batches<E: From<CubeError>>(
        &mut self,
        w: &PixelWindow,
        spare: ChunkColumns,
        emit: &mut dyn FnMut(ChunkColumns) -> Result<ChunkColumns, E>,
    ) -> Result<ChunkColumns, E> {
        let selected = self.selected(w)?;
        let n = selected.as_ref().map_or(w.len(), Vec::len);
        let Some(limit) = self.batch_limit.filter(|_| n > 0) else {
            let out = self.read_selected(w, selected, spare)?;
            return emit(out);
        };
        let pixel = |i: usize| selected.as_ref().map_or(i, |s| s[i] as usize);
        let mut valid = std::mem::take(&mut self.valid);
        let mut cursor = std::mem::take(&mut self.cursor);
        let result = self
            .screen_pass(w, n, &pixel, &mut valid, &mut cursor)
            .map_err(E::from)
            .and_then(|()| {
                let bands = self.scan.bands;
                let total: usize = cursor.iter().map(|&c| c as usize).sum();
                if batch_bytes(n, total, bands) <= limit {
                    let out = self.fill(w, &pixel, &valid, &mut cursor, spare, Values::Tiff)?;
                    return emit(out);
                }
                // Tiled files are cut along their blocks; a strip anywhere (it is decoded whole anyway).
                let align = if self.scan.block.0 < w.cols {
                    self.scan.block.0.max(1)
                } else {
                    split::STRIP_ALIGN
                };
                let parts = split::column_parts(w, n, &pixel, &cursor, align, limit, bands);
                log::debug!(
                    "rows {}..{}: {} observations of {n} pixels ({}) in {} batches",
                    w.row,
                    w.row + w.rows,
                    total,
                    treesits_core::memory::human_bytes(batch_bytes(n, total, bands) as u64),
                    parts.len()
                );
                let words = n.div_ceil(64);
                let spills = if align == split::STRIP_ALIGN {
                    Some(self.spill_pass(w, &pixel, &valid, words, &parts)?)
                } else {
                    None
                };
                let mut spare = spare;
                let mut part_valid = Vec::new();
                let mut part_cursor = Vec::new();
                for (p, part) in parts.iter().enumerate() {
                    let sel = part.pixels(w, &pixel);
                    split::part_validity(
                        &valid,
                        words,
                        self.scan.acquisitions.len(),
                        &part.members,
                        &mut part_valid,
                    );
                    part_cursor.clear();
                    part_cursor.extend(part.members.iter().map(|&i| cursor[i as usize]));
                    let values = spills.as_ref().map_or(Values::Tiff, |s| Values::Spill(&s[p]));
                    let part_pixel = |j: usize| sel[j] as usize;
                    let out = self.fill(
                        &part.window,
                        &part_pixel,
                        &part_valid,
                        &mut part_cursor,
                        spare,
                        values,
                    )?;
                    spare = emit(out)?;
                }
                Ok(spare)
            });
        self.valid = valid;
        self.cursor = cursor;
        result
    }

    /// Pass 2 for a screened window: sizes `out` from the per-pixel counts in `cursor` and merges
    /// the BOA bands of the acquisitions with any valid pixel, each read once. Writing each
    /// acquisition's values straight into the pixel-major output would stream through all of the
    /// output once per acquisition and band; instead the same band of a group of acquisitions is
    /// read side by side and merged into the output in one sequential pass, following a program
    /// (output position, index of the value) built once per group.
    fn fill(
        &mut self,
        w: &PixelWindow,
        pixel: &impl Fn(usize) -> usize,
        valid: &[u64],
        cursor: &mut [u32],
        spare: ChunkColumns,
        values: Values<'_>,
    ) -> Result<ChunkColumns, CubeError> {
        let n = cursor.len();
        let mut out = spare;
        start_columns(&mut out, w, n, self.scan.bands, pixel);
        let total = size_columns(&mut out, cursor);
        let words = n.div_ceil(64);
        let obs: Vec<usize> = valid
            .chunks(words.max(1))
            .map(|bits| bits.iter().map(|b| b.count_ones() as usize).sum())
            .collect();
        let used: Vec<usize> = (0..obs.len()).filter(|&k| obs[k] > 0).collect();
        let budget = self
            .group_bytes
            .unwrap_or_else(|| group_budget(total, self.scan.bands));
        // A pixel-interleaved file decodes all its bands with each block: a group then holds every
        // band of its acquisitions (see `merge_group`), so groups are smaller for the same budget.
        // Spilled values are compact: only the program counts.
        let per_acquisition = match values {
            Values::Spill(_) => 0,
            Values::Tiff if self.scan.block_bands > 1 => w.len() * self.scan.bands,
            Values::Tiff => w.len(),
        };
        for group in acquisition_groups(&used, &obs, per_acquisition, budget) {
            let bits = Validity { valid, words, values };
            self.merge_group(group, w, bits, cursor, pixel, &mut out)?;
        }
        Ok(out)
    }

    /// Pass 1: QAI only, to size every pixel's list. Bit i of `valid[k]`: pixel i is valid on
    /// acquisition k; `cursor` counts each pixel's valid observations.
    fn screen_pass(
        &mut self,
        w: &PixelWindow,
        n: usize,
        pixel: &impl Fn(usize) -> usize,
        valid: &mut Vec<u64>,
        cursor: &mut Vec<u32>,
    ) -> Result<(), CubeError> {
        let n_acq = self.scan.acquisitions.len();
        let words = n.div_ceil(64);
        valid.clear();
        valid.resize(n_acq * words, 0);
        cursor.clear();
        cursor.resize(n, 0);
        for k in 0..n_acq {
            self.read_file(k, File::Qai, 1, w, false)?;
            self.release(k, File::Qai);
            let bits = &mut valid[k * words..(k + 1) * words];
            let q = &self.qai;
            let screen = self.screen;
            for (i, c) in cursor.iter_mut().enumerate() {
                let ok = u64::from(!screen.rejects(q[pixel(i)]));
                bits[i >> 6] |= ok << (i & 63);
                *c += ok as u32;
            }
        }
        Ok(())
    }

    /// For a strip window cut into `parts`: decodes every band of every acquisition with a valid
    /// pixel once, for the whole window, and appends the valid values of each part's pixels to that
    /// part's spill (acquisition by acquisition, band by band, in pixel order).
    fn spill_pass(
        &mut self,
        w: &PixelWindow,
        pixel: &impl Fn(usize) -> usize,
        valid: &[u64],
        words: usize,
        parts: &[Part],
    ) -> Result<Vec<Spill>, CubeError> {
        let dir = self.spill_dir.display().to_string();
        let spill_err = |source| CubeError::Spill {
            dir: dir.clone(),
            source,
        };
        let mut writers = parts
            .iter()
            .map(|_| SpillWriter::new(&self.spill_dir, self.scan.acquisitions.len(), self.scan.bands))
            .collect::<Result<Vec<_>, _>>()
            .map_err(spill_err)?;
        // Per part: the window positions of its pixels valid on the acquisition being spilled.
        let mut positions: Vec<Vec<u32>> = parts.iter().map(|_| Vec::new()).collect();
        for k in 0..self.scan.acquisitions.len() {
            let bits = &valid[k * words..(k + 1) * words];
            if bits.iter().all(|&b| b == 0) {
                continue;
            }
            for (part, pos) in parts.iter().zip(&mut positions) {
                pos.clear();
                pos.extend(
                    part.members
                        .iter()
                        .filter(|&&i| bits[i as usize >> 6] >> (i & 63) & 1 == 1)
                        .map(|&i| pixel(i as usize) as u32),
                );
            }
            let scan = self.scan;
            for &band in scan.boa_bands(scan.acquisitions[k].sensor) {
                self.read_file(k, File::Boa, band, w, true)?;
                for (writer, pos) in writers.iter_mut().zip(&positions) {
                    writer.append(k, &self.band, pos).map_err(spill_err)?;
                }
            }
            self.release(k, File::Boa);
        }
        writers
            .into_iter()
            .map(|w| w.finish())
            .collect::<Result<Vec<_>, _>>()
            .map_err(spill_err)
    }

    /// Merges one group of acquisitions into `out`: their dates and sensors, then band by band their
    /// valid values, each pixel's in (date, sensor) order.
    fn merge_group(
        &mut self,
        group: &[usize],
        w: &PixelWindow,
        bits: Validity,
        cursor: &mut [u32],
        pixel: &impl Fn(usize) -> usize,
        out: &mut ChunkColumns,
    ) -> Result<(), CubeError> {
        let wl = w.len();
        let (valid, words, values) = (bits.valid, bits.words, bits.values);
        // Spilled values hold only each acquisition's valid pixels, in pixel order: acquisition g
        // of the group starts at base[g] and its next value is at base[g] + seen[g].
        let compact = matches!(values, Values::Spill(_));
        let counts: Vec<usize> = group
            .iter()
            .map(|&k| {
                valid[k * words..(k + 1) * words]
                    .iter()
                    .map(|b| b.count_ones() as usize)
                    .sum()
            })
            .collect();
        let mut base = Vec::with_capacity(group.len());
        let mut region = 0;
        for c in &counts {
            base.push(region);
            region += c;
        }
        let mut seen = vec![0usize; group.len()];
        if !compact {
            region = group.len() * wl;
        }
        let stamps: Vec<(i32, u8)> = group
            .iter()
            .map(|&k| {
                let acq = &self.scan.acquisitions[k];
                (acq.date.days_since_epoch(), acq.sensor.code())
            })
            .collect();
        // The merge program: (output position, index in `windows`), in output order.
        let mut program = std::mem::take(&mut self.program);
        program.clear();
        for wi in 0..words {
            let mut any = group.iter().fold(0u64, |a, &k| a | valid[k * words + wi]);
            while any != 0 {
                let bit = any.trailing_zeros() as usize;
                let i = wi * 64 + bit;
                let px = pixel(i);
                for (g, &k) in group.iter().enumerate() {
                    if valid[k * words + wi] >> bit & 1 == 1 {
                        let pos = cursor[i];
                        cursor[i] += 1;
                        let from = if compact {
                            seen[g] += 1;
                            base[g] + seen[g] - 1
                        } else {
                            g * wl + px
                        };
                        program.push((pos, from as u32));
                        (out.date[pos as usize], out.sensor[pos as usize]) = stamps[g];
                    }
                }
                any &= any - 1;
            }
        }
        // Every value is overwritten by the reads: no need to clear.
        let scan = self.scan;
        let numbers: Vec<&[usize]> = group
            .iter()
            .map(|&k| scan.boa_bands(scan.acquisitions[k].sensor))
            .collect();
        let mut windows = std::mem::take(&mut self.windows);
        let n = group.len();
        if let Values::Spill(spill) = values {
            windows.resize(region, 0);
            for (b, dst) in out.bands.iter_mut().enumerate() {
                for (g, &k) in group.iter().enumerate() {
                    spill.read(k, b, &mut windows[base[g]..base[g] + counts[g]])?;
                }
                for &(pos, from) in &program {
                    dst[pos as usize] = windows[from as usize];
                }
            }
            self.program = program;
            self.windows = windows;
            return Ok(());
        }
        if scan.block_bands > 1 {
            // Pixel-interleaved files (COGs of GDAL < 3.11) decode every band of a block at once:
            // all bands of one acquisition are read in a row, while its blocks are in GDAL's cache
            // (which then needs one acquisition's blocks, not the group's), and merged band by band.
            windows.resize(out.bands.len() * region, 0);
            for (g, &k) in group.iter().enumerate() {
                for (b, &band) in numbers[g].iter().enumerate() {
                    self.read_file(k, File::Boa, band, w, true)?;
                    let at = (b * n + g) * wl;
                    windows[at..at + wl].copy_from_slice(&self.band);
                }
            }
            for (b, dst) in out.bands.iter_mut().enumerate() {
                let band = &windows[b * n * wl..(b + 1) * n * wl];
                for &(pos, from) in &program {
                    dst[pos as usize] = band[from as usize];
                }
            }
        } else {
            windows.resize(n * wl, 0);
            for (b, dst) in out.bands.iter_mut().enumerate() {
                for (g, &k) in group.iter().enumerate() {
                    self.read_file(k, File::Boa, numbers[g][b], w, true)?;
                    windows[g * wl..(g + 1) * wl].copy_from_slice(&self.band);
                }
                for &(pos, from) in &program {
                    dst[pos as usize] = windows[from as usize];
                }
            }
        }
        for &k in group {
            self.release(k, File::Boa);
        }
        self.program = program;
        self.windows = windows;
        Ok(())
    }

    /// Reads every band the series uses of every file for a window, the same way [`ChunkReader::read`] reads them,
    /// and returns how many values were read (the baseline `cube-extract` is benchmarked against).
    pub fn read_all_bands(&mut self, w: &PixelWindow) -> Result<u64, CubeError> {
        let mut n = 0u64;
        let mut checksum = 0i64;
        for k in 0..self.scan.acquisitions.len() {
            self.read_file(k, File::Qai, 1, w, false)?;
            self.release(k, File::Qai);
            checksum += self.qai.iter().map(|&v| i64::from(v)).sum::<i64>();
            n += self.qai.len() as u64;
            let scan = self.scan;
            for &b in scan.boa_bands(scan.acquisitions[k].sensor) {
                self.read_file(k, File::Boa, b, w, true)?;
                checksum += self.band.iter().map(|&v| i64::from(v)).sum::<i64>();
                n += self.band.len() as u64;
            }
            self.release(k, File::Boa);
        }
        log::trace!("rows {}..{}: checksum {checksum}", w.row, w.row + w.rows);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envi_level2_files_are_recognised_to_be_named_in_the_error() {
        let s2 = [Sensor::Sen2a, Sensor::Sen2b];
        assert!(is_envi_level2("20210615_LEVEL2_SEN2A_BOA.dat", &s2));
        assert!(is_envi_level2("20210615_LEVEL2_SEN2B_QAI.hdr", &s2));
        assert!(
            !is_envi_level2("20210615_LEVEL2_LND08_BOA.dat", &s2),
            "not a selected sensor"
        );
        assert!(!is_envi_level2("20210615_LEVEL2_SEN2A_CLD.dat", &s2));
        assert!(!is_envi_level2("20210615_LEVEL2_SEN2A_BOA.tif", &s2));
        assert!(!is_envi_level2("notes.dat", &s2));
    }

    #[test]
    fn cube_definition_is_looked_for_beside_the_tile_locally_and_on_s3() {
        let loc = |s: &str| {
            Location::parse(s)
                .unwrap()
                .sibling(CUBE_DEFINITION_FILE)
                .to_string()
        };
        assert_eq!(
            loc("s3://cube/germany/X0058_Y0056"),
            "s3://cube/germany/datacube-definition.prj"
        );
        assert_eq!(loc("s3://cube/X0058_Y0056/"), "s3://cube/datacube-definition.prj");
        assert_eq!(
            loc("/data/cube/X0058_Y0056"),
            Path::new("/data/cube/datacube-definition.prj")
                .display()
                .to_string()
        );
        assert_eq!(loc("X0058_Y0056"), "datacube-definition.prj");
    }
}
