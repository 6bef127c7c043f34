//! A FORCE tile on disk or on S3: finding its Level-2 files, checking they agree, reading them by blocks.
//!
//! [`scan_tile`] lists the tile directory through GDAL's virtual file system (so `/vsis3/` works as well
//! as local paths), pairs every BOA with its QAI and opens each file once to check grid, band count and
//! type. [`ChunkReader`] then turns a band of tile rows into [`ChunkColumns`]; each worker thread owns
//! one reader and so its own dataset handles (GDAL datasets are not `Sync`).

use std::collections::BTreeMap;
use std::path::Path;

use gdal::raster::GdalDataType;
use gdal::Dataset;
use treesits_core::chunk::ChunkColumns;
use treesits_core::{CubeDefinition, Date, Level2Name, PixelWindow, Product, QaiScreen, Sensor, TileId};

use crate::Location;

#[derive(Debug, thiserror::Error)]
pub enum CubeError {
    #[error("{0}: not a FORCE tile directory (expected a name like X0058_Y0056)")]
    NotATile(String),
    #[error("cannot list {path}")]
    List {
        path: String,
        source: gdal::errors::GdalError,
    },
    #[error("{0}: no BOA files for the selected sensors and dates")]
    Empty(String),
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
    #[error("cannot read {path}: {reason}")]
    Prj { path: String, reason: String },
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
    pub bands: usize,
    pub band_names: Vec<String>,
    /// Block shape (columns, rows) of the BOA files.
    pub block: (usize, usize),
    pub geotransform: [f64; 6],
    pub crs_wkt: String,
    /// The cube's `datacube-definition.prj`, when the tile's parent directory has one.
    pub cube: Option<CubeDefinition>,
}

/// Sends GDAL's own messages to the log (debug level) instead of stderr: every failure that matters
/// comes back as an error naming the file, so a tool prints one line, not GDAL's echo of it too.
pub fn log_gdal_messages() {
    gdal::config::set_error_handler(|class, number, message| {
        log::debug!("GDAL {class:?} {number}: {message}");
    });
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

fn same_geotransform(a: &[f64; 6], b: &[f64; 6]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0))
}

/// Lists, pairs and checks the files of one tile.
pub fn scan_tile(location: &Location, sel: &TileSelection) -> Result<TileScan, CubeError> {
    let name = location.file_name().unwrap_or_default().to_string();
    let tile: TileId = name
        .parse()
        .map_err(|_| CubeError::NotATile(location.to_string()))?;
    let dir = location.gdal_path();
    let entries = gdal::vsi::read_dir(Path::new(&dir), false).map_err(|source| CubeError::List {
        path: location.to_string(),
        source,
    })?;
    // (date, sensor code) → (BOA, QAI) file names.
    let mut found: BTreeMap<(Date, u8), (Option<Level2Name>, Option<Level2Name>)> = BTreeMap::new();
    for entry in entries {
        let file = entry.to_string_lossy().into_owned();
        if !file.ends_with(".tif") {
            continue;
        }
        let Ok(l2) = Level2Name::parse(&file) else {
            log::debug!("{tile}: skipping {file} (not a Level-2 file name)");
            continue;
        };
        if !sel.sensors.contains(&l2.sensor) || l2.date < sel.start || l2.date > sel.end {
            continue;
        }
        let slot = found.entry((l2.date, l2.sensor.code())).or_default();
        match l2.product {
            Product::Boa => slot.0 = Some(l2),
            Product::Qai => slot.1 = Some(l2),
            _ => {}
        }
    }
    let mut acquisitions = Vec::new();
    for (boa, qai) in found.into_values() {
        match (boa, qai) {
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
            (None, Some(qai)) => log::warn!("{tile}: ignoring {qai}: no BOA file for it"),
            (None, None) => {}
        }
    }
    if acquisitions.is_empty() {
        return Err(CubeError::Empty(location.to_string()));
    }

    // Every file opened once, here, so a bad one is named before any work starts.
    let first = open(&acquisitions[0].boa)?;
    let size = first.raster_size();
    let bands = first.raster_count();
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
    let expected_bands = acquisitions[0].sensor.bands();
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
            if ds.raster_count() != want_bands || (loc == &acq.boa && ds.raster_count() != bands) {
                return Err(mismatch(
                    loc,
                    format!(
                        "{} bands, expected {want_bands} for {} (and {bands} as in {})",
                        ds.raster_count(),
                        acq.sensor,
                        acquisitions[0].boa
                    ),
                ));
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
        bands,
        band_names: expected_bands.iter().map(|b| b.to_string()).collect(),
        block,
        geotransform,
        crs_wkt,
        cube,
    })
}

/// Reads `../datacube-definition.prj` of a local tile (either form) and checks it is consistent with
/// the tile; S3 tiles rely on the files' own georeferencing.
fn read_cube_definition(location: &Location) -> Result<Option<CubeDefinition>, CubeError> {
    let Some(prj) = location
        .as_local()
        .and_then(Path::parent)
        .map(|p| p.join("datacube-definition.prj"))
        .filter(|p| p.exists())
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&prj).map_err(|e| CubeError::Prj {
        path: prj.display().to_string(),
        reason: e.to_string(),
    })?;
    CubeDefinition::parse(&text)
        .map(Some)
        .map_err(|e| CubeError::Prj {
            path: prj.display().to_string(),
            reason: e.to_string(),
        })
}

impl TileScan {
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
                    "origin ({x}, {y}) is not the corner ({}, {}) of tile {} in datacube-definition.prj",
                    e.xmin, e.ymax, self.tile
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
                format!(
                    "mask geotransform {gt:?} is not tile {}'s {:?}",
                    self.tile, self.geotransform
                ),
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

/// Reads chunks of one tile. Not `Sync`: give each worker thread its own (`map_init`).
pub struct ChunkReader<'a> {
    scan: &'a TileScan,
    screen: &'a QaiScreen,
    mask: Option<(&'a Location, Option<Dataset>)>,
    /// Opened on first use: (BOA, QAI) per acquisition.
    datasets: Vec<Option<(Dataset, Dataset)>>,
}

fn read_window<T: gdal::raster::GdalType + Copy>(
    ds: &Dataset,
    loc: &Location,
    band: usize,
    w: &PixelWindow,
) -> Result<Vec<T>, CubeError> {
    let what = || format!("band {band}, rows {}..{}", w.row, w.row + w.rows);
    let b = ds.rasterband(band).map_err(|source| CubeError::Read {
        path: loc.to_string(),
        what: what(),
        source,
    })?;
    let buf = b
        .read_as::<T>(
            (w.col as isize, w.row as isize),
            (w.cols, w.rows),
            (w.cols, w.rows),
            None,
        )
        .map_err(|source| CubeError::Read {
            path: loc.to_string(),
            what: what(),
            source,
        })?;
    Ok(buf.into_shape_and_vec().1)
}

impl<'a> ChunkReader<'a> {
    pub fn new(scan: &'a TileScan, screen: &'a QaiScreen, mask: Option<&'a Location>) -> ChunkReader<'a> {
        ChunkReader {
            scan,
            screen,
            mask: mask.map(|m| (m, None)),
            datasets: (0..scan.acquisitions.len()).map(|_| None).collect(),
        }
    }

    fn files(&mut self, k: usize) -> Result<&(Dataset, Dataset), CubeError> {
        if self.datasets[k].is_none() {
            let acq = &self.scan.acquisitions[k];
            self.datasets[k] = Some((open(&acq.boa)?, open(&acq.qai)?));
        }
        Ok(self.datasets[k].as_ref().expect("just opened"))
    }

    /// Which pixels of the window to process (indices into the window, row-major).
    fn selected(&mut self, w: &PixelWindow) -> Result<Vec<usize>, CubeError> {
        let Some((loc, ds)) = &mut self.mask else {
            return Ok((0..w.len()).collect());
        };
        if ds.is_none() {
            *ds = Some(open(loc)?);
        }
        let ds = ds.as_ref().expect("just opened");
        let mask: Vec<u8> = read_window(ds, loc, 1, w)?;
        Ok(mask
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == 1)
            .map(|(i, _)| i)
            .collect())
    }

    /// Reads one window: the selected pixels with their observations that pass the screen, in
    /// (date, sensor) order. Memory: the output plus one acquisition's window.
    pub fn read(&mut self, w: &PixelWindow) -> Result<ChunkColumns, CubeError> {
        let selected = self.selected(w)?;
        let n_acq = self.scan.acquisitions.len();
        // Pass 1: QAI only, to size every pixel's list. valid[k * n + i]: acquisition k, pixel i.
        let n = selected.len();
        let mut valid = vec![false; n_acq * n];
        let mut counts = vec![0i32; n];
        for k in 0..n_acq {
            let qai_loc = self.scan.acquisitions[k].qai.clone();
            let (_, qai) = self.files(k)?;
            let q = read_window(qai, &qai_loc, 1, w)?;
            for (i, &px) in selected.iter().enumerate() {
                if !self.screen.rejects(q[px]) {
                    valid[k * n + i] = true;
                    counts[i] += 1;
                }
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0i32);
        for c in &counts {
            offsets.push(offsets.last().expect("starts with 0") + c);
        }
        let total = *offsets.last().expect("starts with 0") as usize;
        let bands = self.scan.bands;
        let mut out = ChunkColumns {
            row: selected.iter().map(|&px| (w.row + px / w.cols) as u32).collect(),
            col: selected.iter().map(|&px| (w.col + px % w.cols) as u32).collect(),
            offsets,
            date: vec![0; total],
            sensor: vec![0; total],
            bands: vec![vec![0; total]; bands],
        };
        // Pass 2: BOA of the acquisitions with any valid pixel, scattered into place.
        let mut cursor: Vec<usize> = out.offsets[..n].iter().map(|&o| o as usize).collect();
        for k in 0..n_acq {
            let flags = &valid[k * n..(k + 1) * n];
            if !flags.iter().any(|v| *v) {
                continue;
            }
            let acq = self.scan.acquisitions[k].clone();
            let (boa, _) = self.files(k)?;
            let data = (1..=bands)
                .map(|b| read_window(boa, &acq.boa, b, w))
                .collect::<Result<Vec<_>, _>>()?;
            let day = acq.date.days_since_epoch();
            let code = acq.sensor.code();
            for (i, &px) in selected.iter().enumerate() {
                if flags[i] {
                    let pos = cursor[i];
                    out.date[pos] = day;
                    out.sensor[pos] = code;
                    for (b, d) in data.iter().enumerate() {
                        out.bands[b][pos] = d[px];
                    }
                    cursor[i] += 1;
                }
            }
        }
        Ok(out)
    }
}

impl ChunkReader<'_> {
    /// Reads every band of every file for a window and returns how many values were read (the
    /// baseline `cube-extract` is benchmarked against).
    pub fn read_all_bands(&mut self, w: &PixelWindow) -> Result<u64, CubeError> {
        let mut n = 0u64;
        let mut checksum = 0i64;
        for k in 0..self.scan.acquisitions.len() {
            let acq = self.scan.acquisitions[k].clone();
            let bands = self.scan.bands;
            let (boa, qai) = self.files(k)?;
            for v in read_window::<i16>(qai, &acq.qai, 1, w)? {
                checksum += i64::from(v);
                n += 1;
            }
            for b in 1..=bands {
                for v in read_window::<i16>(boa, &acq.boa, b, w)? {
                    checksum += i64::from(v);
                    n += 1;
                }
            }
        }
        log::trace!("rows {}..{}: checksum {checksum}", w.row, w.row + w.rows);
        Ok(n)
    }
}
