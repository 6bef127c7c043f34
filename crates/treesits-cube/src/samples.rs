//! `sample-extract`: labelled points and polygons over a FORCE cube → one training table.
//!
//! The samples (any OGR vector, any CRS) are reprojected onto the cube's CRS and placed on its grid:
//! a point on the pixel that holds it, a polygon on every pixel whose centre is inside
//! ([`PolygonMode::All`], GDAL's rasteriser rule, as aoi-select's masks) or on one pixel
//! ([`PolygonMode::Centre`]). Per tile, the sample pixels are grouped by the files' blocks (strips
//! or 256 px tiles), and every block is read once, for all its samples, by [`ChunkReader::read_pixels`]
//! — the reader `cube-extract` uses, with the same screen and merge, so a sample's series is
//! byte-for-byte the series `cube-extract` gives the same pixel. Blocks are read in waves of a few
//! per worker and their rows streamed into the Parquet writer: memory is bounded by the blocks in
//! flight, not by the number of samples.
//!
//! Nothing is dropped silently: a sample off the cube, without a valid observation, whose label is
//! missing, or on a pixel an earlier sample already has (the first keeps the pixel, the later is
//! reported as `duplicate_of:<first sample_id>`) is counted and listed ([`Skipped`]).

pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use gdal::raster::{rasterize, RasterizeOptions};
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, OGRFieldType, OGRwkbGeometryType};
use gdal::{DriverManager, GdalOpenFlags};
use rayon::prelude::*;
use treesits_core::chunk::ChunkColumns;
use treesits_core::level2::{BOA_NODATA, BOA_SCALE};
use treesits_core::species::{classes_json, truth_classes, SpeciesClass};
use treesits_core::{Date, Location, PixelWindow, TileId};
use treesits_gdal::cube_definition::{read_cube_definition, CubeDefinitionError};
use treesits_gdal::error::GdalCause;
use treesits_gdal::listing::{cube_tiles, ListError};
use treesits_gdal::srs::gis_order;
use treesits_gdal::vector::{self, LayerError, OpenError};

use crate::extract::ExtractPlan;
use crate::extract_request::{read_model_contract, ExtractRequest, RequestError};
use crate::scan::{ChunkReader, CubeError};
use table::{OptionalColumns, Rows, TableError, TableWriter};

/// Which pixels of a polygon are samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolygonMode {
    /// Every pixel whose centre is inside the polygon.
    #[default]
    All,
    /// One pixel: the pixel inside the polygon nearest its centroid (the centroid's own pixel when
    /// no pixel centre is inside).
    Centre,
}

impl std::str::FromStr for PolygonMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(PolygonMode::All),
            "centre" | "center" => Ok(PolygonMode::Centre),
            _ => Err(format!("'{s}' is not a polygon mode: give all or centre")),
        }
    }
}

/// What to extract, as the command line gives it.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// The cube root (holding `datacube-definition.prj` and the `Xdddd_Ydddd` tiles), local or `s3://`.
    pub cube: String,
    /// The samples: a vector GDAL opens (local path or `/vsis3/…`).
    pub samples: String,
    pub layer: Option<String>,
    /// The label field: integer class codes or class names.
    pub label: String,
    /// A class table (`[{"code":0,"name":"spruce","colour":[r,g,b]},…]`); default: the project's scheme.
    pub classes: Option<PathBuf>,
    pub plot_id: Option<String>,
    pub weight: Option<String>,
    pub year: Option<String>,
    pub polygons: PolygonMode,
    pub start: Option<Date>,
    pub end: Option<Date>,
    /// As [`ExtractRequest::sensors`].
    pub sensors: Option<String>,
    /// As [`ExtractRequest::bands`] (`--bands`: Landsat and Sentinel-2 on their common bands).
    pub bands: Option<String>,
    /// As [`ExtractRequest::model`]: the bands (and sensors) of a model's contract; its classes are
    /// the class table unless `classes` is given.
    pub model: Option<PathBuf>,
    pub screen: String,
    pub max_open_datasets: usize,
    pub out: PathBuf,
    /// Benchmark baseline: read every BOA and QAI band of the touched blocks with the same workers
    /// (as [`ChunkReader::read_all_bands`]), write no table.
    pub plain_read: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(
        "cannot open --samples {path} as a vector ({source}): give a GeoPackage, Shapefile, GeoJSON or \
         FlatGeobuf file that OGR can read"
    )]
    Unreadable { path: String, source: OpenError },
    #[error("--samples {path} {source}")]
    Layer { path: String, source: LayerError },
    #[error("--samples {path}: layer '{layer}' has no CRS: assign one (ogr2ogr -a_srs EPSG:…)")]
    NoCrs { path: String, layer: String },
    #[error("--samples {path}: cannot reproject onto the cube's CRS: {source}")]
    Reproject { path: String, source: GdalCause },
    #[error("{flag} {field}: --samples {path} has no such field; its fields are {available}")]
    NoField {
        flag: &'static str,
        field: String,
        path: String,
        available: String,
    },
    #[error(
        "--label {field}: field type {kind} of --samples {path} is neither integer (class codes) nor \
         text (class names): give an integer or text field"
    )]
    LabelType {
        field: String,
        path: String,
        kind: String,
    },
    #[error(
        "--label {field}: feature {sample_id} of --samples {path} has {what}, which is not in the class \
         table ({classes}): fix the label or give --classes FILE.json with it"
    )]
    UnknownLabel {
        field: String,
        sample_id: i64,
        path: String,
        what: String,
        classes: String,
    },
    #[error("--samples {path}: feature {sample_id} is a {kind}: give points or polygons")]
    Geometry {
        path: String,
        sample_id: i64,
        kind: String,
    },
    #[error(
        "--classes {path}: {problem}: give a JSON array of {{\"code\":0,\"name\":\"…\",\"colour\":[r,g,b]}}"
    )]
    Classes { path: PathBuf, problem: String },
    #[error("--cube {cube}: {source}: give the cube root that holds datacube-definition.prj and the tiles")]
    CubeDefinition {
        cube: String,
        source: CubeDefinitionError,
    },
    #[error("--cube {cube}: {source}")]
    CubeList { cube: String, source: ListError },
    #[error(
        "--samples {path}: none of its {count} samples lies on a tile of --cube {cube}: check that \
         the samples and the cube cover the same area (and the samples' CRS)"
    )]
    NoIntersection {
        path: String,
        count: usize,
        cube: String,
    },
    #[error("--samples {path}: no features")]
    NoFeatures { path: String },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("--samples {path}: rasterising polygons: {source}")]
    Rasterize { path: String, source: GdalCause },
    #[error("--report {path}: {source}")]
    Report { path: PathBuf, source: std::io::Error },
}

/// Why a sample (or one pixel of a polygon sample) is not a row of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    OffCube,
    NoValidObservation,
    DuplicateOf(i64),
    LabelMissing,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::OffCube => f.write_str("off_cube"),
            SkipReason::NoValidObservation => f.write_str("no_valid_observation"),
            SkipReason::DuplicateOf(id) => write!(f, "duplicate_of:{id}"),
            SkipReason::LabelMissing => f.write_str("label_missing"),
        }
    }
}

/// A sample (or one of its pixels) not written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub sample_id: i64,
    /// The pixel, when the sample was placed on one.
    pub pixel: Option<(TileId, u32, u32)>,
    pub reason: SkipReason,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SampleSummary {
    /// Features in the samples file.
    pub samples: usize,
    /// Rows written (sample pixels).
    pub pixels: usize,
    /// Samples with at least one row.
    pub samples_written: usize,
    pub off_cube: usize,
    pub no_valid_observation: usize,
    pub duplicates: usize,
    pub label_missing: usize,
    /// Every sample or pixel not written, sorted by sample id.
    pub skipped: Vec<Skipped>,
    /// Blocks read (each once).
    pub blocks: usize,
}

/// A feature's attributes.
#[derive(Debug, Clone)]
struct Attributes {
    label: Option<(i32, String)>,
    plot_id: Option<String>,
    weight: Option<f64>,
    year: Option<i32>,
}

#[derive(Debug, Clone)]
enum Shape {
    Points(Vec<(f64, f64)>),
    /// WKB in the cube's CRS and its envelope (xmin, ymin, xmax, ymax).
    Polygon(Vec<u8>, [f64; 4]),
    Empty,
}

#[derive(Debug, Clone)]
struct Sample {
    id: i64,
    attrs: Attributes,
    shape: Shape,
}

/// The class table of `--classes`, else of the `--model`'s contract, else the project's scheme.
fn load_classes(path: Option<&Path>, model: Option<&Path>) -> Result<Vec<SpeciesClass>, SampleError> {
    let Some(path) = path else {
        return match model {
            Some(m) => Ok(read_model_contract(m)?.classes),
            None => Ok(truth_classes()),
        };
    };
    let bad = |problem: String| SampleError::Classes {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let classes: Vec<SpeciesClass> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if classes.is_empty() {
        return Err(bad("no classes".into()));
    }
    Ok(classes)
}

fn class_list(classes: &[SpeciesClass]) -> String {
    classes
        .iter()
        .map(|c| format!("{}={}", c.code, c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads every feature: attributes and shape in the cube's CRS (`cube_wkt`).
fn read_samples(
    req: &SampleRequest,
    cube_wkt: &str,
    classes: &[SpeciesClass],
) -> Result<Vec<Sample>, SampleError> {
    let path = req.samples.clone();
    let ds = vector::open(
        &path,
        GdalOpenFlags::GDAL_OF_VECTOR,
        "not a vector format OGR recognises",
    )
    .map_err(|source| SampleError::Unreadable {
        path: path.clone(),
        source,
    })?;
    let mut layer = vector::choose_layer(&ds, req.layer.as_deref()).map_err(|source| SampleError::Layer {
        path: path.clone(),
        source,
    })?;
    let srs = layer.spatial_ref().ok_or_else(|| SampleError::NoCrs {
        path: path.clone(),
        layer: layer.name(),
    })?;
    let reproject = |e: gdal::errors::GdalError| SampleError::Reproject {
        path: path.clone(),
        source: GdalCause::new(e),
    };
    let cube_srs = gis_order(SpatialRef::from_wkt(cube_wkt).map_err(reproject)?);
    let to_cube = CoordTransform::new(&gis_order(srs), &cube_srs).map_err(reproject)?;

    let fields: Vec<(String, OGRFieldType::Type)> = layer
        .defn()
        .fields()
        .map(|f| (f.name(), f.field_type()))
        .collect();
    let find = |flag: &'static str, name: &str| -> Result<(usize, OGRFieldType::Type), SampleError> {
        fields
            .iter()
            .position(|(n, _)| n == name)
            .or_else(|| fields.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|i| (i, fields[i].1))
            .ok_or_else(|| SampleError::NoField {
                flag,
                field: name.to_string(),
                path: path.clone(),
                available: fields.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", "),
            })
    };
    let (label_idx, label_type) = find("--label", &req.label)?;
    let label_is_code = match label_type {
        OGRFieldType::OFTInteger | OGRFieldType::OFTInteger64 => true,
        OGRFieldType::OFTString => false,
        other => {
            return Err(SampleError::LabelType {
                field: req.label.clone(),
                path: path.clone(),
                kind: gdal::vector::field_type_to_name(other),
            })
        }
    };
    let plot_idx = req.plot_id.as_deref().map(|f| find("--plot-id", f)).transpose()?;
    let weight_idx = req.weight.as_deref().map(|f| find("--weight", f)).transpose()?;
    let year_idx = req.year.as_deref().map(|f| find("--year", f)).transpose()?;

    let mut samples = Vec::new();
    for (i, feature) in layer.features().enumerate() {
        let id = i as i64;
        let unknown = |what: String| SampleError::UnknownLabel {
            field: req.label.clone(),
            sample_id: id,
            path: path.clone(),
            what,
            classes: class_list(classes),
        };
        let label = if label_is_code {
            match feature.field_as_integer64(label_idx).ok().flatten() {
                None => None,
                Some(code) => {
                    let c = classes
                        .iter()
                        .find(|c| i64::from(c.code) == code)
                        .ok_or_else(|| unknown(format!("code {code}")))?;
                    Some((i32::from(c.code), c.name.clone()))
                }
            }
        } else {
            match feature.field_as_string(label_idx).ok().flatten() {
                None => None,
                Some(name) if name.trim().is_empty() => None,
                Some(name) => {
                    let n = name.trim();
                    let c = classes
                        .iter()
                        .find(|c| c.name == n)
                        .or_else(|| classes.iter().find(|c| c.name.eq_ignore_ascii_case(n)))
                        .ok_or_else(|| unknown(format!("name '{name}'")))?;
                    Some((i32::from(c.code), c.name.clone()))
                }
            }
        };
        let attrs = Attributes {
            label,
            plot_id: plot_idx.and_then(|(j, _)| feature.field_as_string(j).ok().flatten()),
            weight: weight_idx.and_then(|(j, _)| feature.field_as_double(j).ok().flatten()),
            year: year_idx.and_then(|(j, _)| feature.field_as_integer(j).ok().flatten()),
        };
        let shape = match feature.geometry() {
            None => Shape::Empty,
            Some(g) if g.is_empty() => Shape::Empty,
            Some(g) => {
                let mut g = g.transform(&to_cube).map_err(reproject)?;
                g.flatten_to_2d();
                shape_of(&g).ok_or_else(|| SampleError::Geometry {
                    path: path.clone(),
                    sample_id: id,
                    kind: g.geometry_name(),
                })?
            }
        };
        samples.push(Sample { id, attrs, shape });
    }
    if samples.is_empty() {
        return Err(SampleError::NoFeatures { path });
    }
    Ok(samples)
}

fn shape_of(g: &Geometry) -> Option<Shape> {
    use OGRwkbGeometryType as T;
    match gdal::vector::geometry_type_flatten(g.geometry_type()) {
        T::wkbPoint => {
            let (x, y, _) = g.get_point(0);
            Some(Shape::Points(vec![(x, y)]))
        }
        T::wkbMultiPoint => Some(Shape::Points(
            (0..g.geometry_count())
                .map(|i| {
                    let (x, y, _) = g.get_geometry(i).get_point(0);
                    (x, y)
                })
                .collect(),
        )),
        T::wkbPolygon | T::wkbMultiPolygon => {
            let e = g.envelope();
            Some(Shape::Polygon(g.wkb().ok()?, [e.MinX, e.MinY, e.MaxX, e.MaxY]))
        }
        _ => None,
    }
}

/// The area-weighted centroid of a polygon's exterior rings (shoelace), or the envelope's centre.
fn centroid(g: &Geometry, env: [f64; 4]) -> (f64, f64) {
    let mut pts: Vec<(f64, f64, f64)> = Vec::new();
    let (mut a, mut cx, mut cy) = (0.0, 0.0, 0.0);
    let mut add = |ring: &Geometry| {
        pts.clear();
        ring.get_points(&mut pts);
        for w in pts.windows(2) {
            let cross = w[0].0 * w[1].1 - w[1].0 * w[0].1;
            a += cross;
            cx += (w[0].0 + w[1].0) * cross;
            cy += (w[0].1 + w[1].1) * cross;
        }
    };
    match gdal::vector::geometry_type_flatten(g.geometry_type()) {
        OGRwkbGeometryType::wkbPolygon => add(&g.get_geometry(0)),
        _ => {
            for i in 0..g.geometry_count() {
                add(&g.get_geometry(i).get_geometry(0));
            }
        }
    }
    if a.abs() < 1e-12 {
        return ((env[0] + env[2]) / 2.0, (env[1] + env[3]) / 2.0);
    }
    (cx / (3.0 * a), cy / (3.0 * a))
}

fn extent_of(e: [f64; 4]) -> treesits_core::grid::Extent {
    treesits_core::grid::Extent {
        xmin: e[0],
        ymin: e[1],
        xmax: e[2],
        ymax: e[3],
    }
}

/// One tile's grid, as its files give it.
#[derive(Debug, Clone, Copy)]
struct TileGeo {
    gt: [f64; 6],
    size: (usize, usize),
}

impl TileGeo {
    fn pixel_of(&self, x: f64, y: f64) -> Option<(u32, u32)> {
        let c = ((x - self.gt[0]) / self.gt[1]).floor();
        let r = ((y - self.gt[3]) / self.gt[5]).floor();
        (c >= 0.0 && r >= 0.0 && (c as usize) < self.size.0 && (r as usize) < self.size.1)
            .then_some((r as u32, c as u32))
    }

    fn centre(&self, row: u32, col: u32) -> (f64, f64) {
        (
            self.gt[0] + (f64::from(col) + 0.5) * self.gt[1],
            self.gt[3] + (f64::from(row) + 0.5) * self.gt[5],
        )
    }

    /// The pixels whose centres are inside `e` (xmin, ymin, xmax, ymax): (row0, col0, rows, cols).
    fn window_of(&self, e: [f64; 4]) -> Option<PixelWindow> {
        let res = self.gt[1];
        let c0 = ((e[0] - self.gt[0]) / res - 0.5).ceil().max(0.0);
        let c1 = ((e[2] - self.gt[0]) / res - 0.5).ceil().min(self.size.0 as f64);
        let r0 = ((self.gt[3] - e[3]) / res - 0.5).ceil().max(0.0);
        let r1 = ((self.gt[3] - e[1]) / res - 0.5).ceil().min(self.size.1 as f64);
        (c1 > c0 && r1 > r0)
            .then(|| PixelWindow::new(r0 as usize, c0 as usize, (r1 - r0) as usize, (c1 - c0) as usize))
    }
}

/// The pixels of `tile` whose centres are inside the polygon (`wkb`, envelope `env`), rasterised
/// with GDAL's rule on an in-memory raster over the polygon's window.
fn polygon_pixels(
    geo: &TileGeo,
    wkb: &[u8],
    env: [f64; 4],
) -> Result<Vec<(u32, u32)>, gdal::errors::GdalError> {
    let Some(w) = geo.window_of(env) else {
        return Ok(Vec::new());
    };
    let driver = DriverManager::get_driver_by_name("MEM")?;
    let mut ds = driver.create_with_band_type::<u8, _>("", w.cols, w.rows, 1)?;
    let res = geo.gt[1];
    ds.set_geo_transform(&[
        geo.gt[0] + w.col as f64 * res,
        res,
        0.0,
        geo.gt[3] + w.row as f64 * geo.gt[5],
        0.0,
        geo.gt[5],
    ])?;
    let g = Geometry::from_wkb(wkb)?;
    rasterize(&mut ds, &[1], &[g], &[1.0], Some(RasterizeOptions::default()))?;
    let values = ds
        .rasterband(1)?
        .read_as::<u8>((0, 0), (w.cols, w.rows), (w.cols, w.rows), None)?
        .into_shape_and_vec()
        .1;
    Ok(values
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(i, _)| ((w.row + i / w.cols) as u32, (w.col + i % w.cols) as u32))
        .collect())
}

/// One sample pixel to read: index into the samples and the pixel.
#[derive(Debug, Clone, Copy)]
struct Target {
    sample: usize,
    row: u32,
    col: u32,
}

/// The run: reads the samples, places them, reads each touched block once, writes the table.
pub fn extract_samples(req: &SampleRequest) -> Result<SampleSummary, SampleError> {
    let cube = Location::parse(&req.cube).map_err(RequestError::from)?;
    let definition =
        read_cube_definition(&cube.join(treesits_core::names::CUBE_DEFINITION_FILE)).map_err(|source| {
            SampleError::CubeDefinition {
                cube: req.cube.clone(),
                source,
            }
        })?;
    let present: Vec<TileId> = cube_tiles(&cube.gdal_path()).map_err(|source| SampleError::CubeList {
        cube: req.cube.clone(),
        source,
    })?;
    let classes = load_classes(req.classes.as_deref(), req.model.as_deref())?;
    let samples = read_samples(req, &definition.projection_wkt, &classes)?;
    let mut summary = SampleSummary {
        samples: samples.len(),
        ..SampleSummary::default()
    };

    // The tiles each sample may touch, then those tiles' plans (scanned once each).
    let mut tiles: BTreeMap<TileId, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if s.attrs.label.is_none() {
            continue;
        }
        let touched: Vec<TileId> = match &s.shape {
            Shape::Points(p) => p.iter().map(|&(x, y)| definition.tile_of(x, y)).collect(),
            Shape::Polygon(_, e) => definition.tiles_overlapping(&extent_of(*e)),
            Shape::Empty => Vec::new(),
        };
        for t in touched {
            if present.binary_search(&t).is_ok() {
                let v = tiles.entry(t).or_default();
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
    }
    let labelled = samples.iter().filter(|s| s.attrs.label.is_some()).count();
    if tiles.is_empty() && labelled > 0 {
        return Err(SampleError::NoIntersection {
            path: req.samples.clone(),
            count: labelled,
            cube: req.cube.clone(),
        });
    }

    // Every tile's plan first, so bad input is told before the table is started.
    let mut plans = Vec::new();
    for &tile in tiles.keys() {
        let extract = ExtractRequest {
            tile: cube.join(&tile.to_string()).to_string(),
            mask: None,
            start: req.start,
            end: req.end,
            sensors: req.sensors.clone(),
            bands: req.bands.clone(),
            model: req.model.clone(),
            screen: req.screen.clone(),
            chunk_rows: None,
            max_open_datasets: req.max_open_datasets,
            zstd_level: treesits_core::chunk::DEFAULT_ZSTD_LEVEL,
            group_bytes: None,
            batch_bytes: None,
            // Samples are read pixel by pixel (`read_pixels`), never as whole-window batches.
            memory: treesits_core::memory::MemoryBudget::choose(None),
        };
        match ExtractPlan::prepare(&extract) {
            Ok(plan) => plans.push(Some(plan)),
            Err(RequestError::Cube(CubeError::Empty(dir))) => {
                log::warn!("{dir}: no acquisitions of the selected sensors and dates: its samples have no valid observation");
                plans.push(None)
            }
            Err(e) => return Err(e.into()),
        }
    }
    let first = plans.iter().flatten().next().cloned();

    // Placement: every labelled sample's pixels, first come first served.
    let mut owner: HashMap<(TileId, u32, u32), i64> = HashMap::new();
    let mut targets: BTreeMap<TileId, Vec<Target>> = BTreeMap::new();
    let mut placed = vec![false; samples.len()];
    let geos: BTreeMap<TileId, Option<TileGeo>> = tiles
        .keys()
        .zip(&plans)
        .map(|(t, p)| {
            let geo = p.as_ref().map(|p| TileGeo {
                gt: p.scan.geotransform,
                size: p.scan.size,
            });
            (*t, geo)
        })
        .collect();
    // Tiles without acquisitions still place their samples on the cube grid.
    let res = first.as_ref().map_or(10.0, |p| p.scan.geotransform[1]);
    let geo_of = |t: TileId| -> TileGeo {
        geos[&t].unwrap_or_else(|| {
            let e = definition.tile_extent(t);
            let n = |d: f64| (d / res).round() as usize;
            TileGeo {
                gt: [e.xmin, res, 0.0, e.ymax, 0.0, -res],
                size: (n(e.width()), n(e.height())),
            }
        })
    };
    let mut place = |i: usize, t: TileId, row: u32, col: u32, skipped: &mut Vec<Skipped>| {
        let id = samples[i].id;
        match owner.get(&(t, row, col)) {
            Some(&first) if first == id => {}
            Some(&first) => skipped.push(Skipped {
                sample_id: id,
                pixel: Some((t, row, col)),
                reason: SkipReason::DuplicateOf(first),
            }),
            None => {
                owner.insert((t, row, col), id);
                targets.entry(t).or_default().push(Target { sample: i, row, col });
            }
        }
    };
    let mut skipped = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if s.attrs.label.is_none() {
            skipped.push(Skipped {
                sample_id: s.id,
                pixel: None,
                reason: SkipReason::LabelMissing,
            });
            continue;
        }
        match &s.shape {
            Shape::Empty => {}
            Shape::Points(points) => {
                for &(x, y) in points {
                    let t = definition.tile_of(x, y);
                    if !geos.contains_key(&t) {
                        continue;
                    }
                    if let Some((row, col)) = geo_of(t).pixel_of(x, y) {
                        placed[i] = true;
                        place(i, t, row, col, &mut skipped);
                    }
                }
            }
            Shape::Polygon(wkb, env) => {
                let mut pixels = Vec::new();
                let on = definition.tiles_overlapping(&extent_of(*env));
                for t in on.into_iter().filter(|t| geos.contains_key(t)) {
                    let geo = geo_of(t);
                    let px = polygon_pixels(&geo, wkb, *env).map_err(|e| SampleError::Rasterize {
                        path: req.samples.clone(),
                        source: GdalCause::new(e),
                    })?;
                    pixels.extend(px.into_iter().map(|(r, c)| (t, r, c)));
                }
                if req.polygons == PolygonMode::Centre {
                    let g = Geometry::from_wkb(wkb).map_err(|e| SampleError::Rasterize {
                        path: req.samples.clone(),
                        source: GdalCause::new(e),
                    })?;
                    let (cx, cy) = centroid(&g, *env);
                    let dist = |&(t, r, c): &(TileId, u32, u32)| {
                        let (x, y) = geo_of(t).centre(r, c);
                        (x - cx).powi(2) + (y - cy).powi(2)
                    };
                    let nearest = pixels.iter().copied().min_by(|a, b| dist(a).total_cmp(&dist(b)));
                    pixels = match nearest {
                        Some(p) => vec![p],
                        None => {
                            let t = definition.tile_of(cx, cy);
                            if geos.contains_key(&t) {
                                geo_of(t)
                                    .pixel_of(cx, cy)
                                    .map(|(r, c)| (t, r, c))
                                    .into_iter()
                                    .collect()
                            } else {
                                Vec::new()
                            }
                        }
                    };
                }
                for (t, r, c) in pixels {
                    placed[i] = true;
                    place(i, t, r, c, &mut skipped);
                }
            }
        }
        if !placed[i] {
            skipped.push(Skipped {
                sample_id: s.id,
                pixel: None,
                reason: SkipReason::OffCube,
            });
        }
    }

    // The table: schema from the first tile read (every tile of a cube has the same bands).
    let band_names = first
        .as_ref()
        .map_or_else(Vec::new, |p| p.scan.band_names.clone());
    let opt = OptionalColumns {
        plot_id: req.plot_id.is_some(),
        weight: req.weight.is_some(),
        year: req.year.is_some(),
    };
    let metadata = file_metadata(req, first.as_ref(), &definition.projection_wkt, &classes, &plans);
    let mut writer = match req.plain_read {
        true => None,
        false => Some(TableWriter::create(
            &req.out,
            table::schema(&band_names, opt, metadata),
            opt,
        )?),
    };
    let threads = rayon::current_num_threads().max(1);
    let mut written_samples = vec![false; samples.len()];
    for (tile, plan) in tiles.keys().zip(&plans) {
        let Some(tile_targets) = targets.remove(tile) else {
            continue;
        };
        let Some(plan) = plan else {
            for t in tile_targets {
                skipped.push(Skipped {
                    sample_id: samples[t.sample].id,
                    pixel: Some((*tile, t.row, t.col)),
                    reason: SkipReason::NoValidObservation,
                });
            }
            continue;
        };
        plan.bound_gdal_cache(threads);
        let windows = block_windows(plan, tile_targets);
        summary.blocks += windows.len();
        let geo = geo_of(*tile);
        // Waves of a few blocks per worker: what is in memory at once.
        for wave in windows.chunks(threads * 2) {
            let reader = || {
                let keep_open = ChunkReader::keep_open_per_worker(plan.max_open_datasets, threads);
                ChunkReader::new(&plan.scan, &plan.screen, None, keep_open)
            };
            let Some(writer) = writer.as_mut() else {
                let values = wave
                    .par_iter()
                    .map_init(reader, |r, (w, _)| r.read_all_bands(w))
                    .collect::<Result<Vec<_>, CubeError>>()?;
                log::trace!("{tile}: {} values read", values.iter().sum::<u64>());
                continue;
            };
            let read = wave
                .par_iter()
                .map_init(reader, |reader, (w, pixels)| {
                    let idx: Vec<u32> = pixels.iter().map(|(i, _)| *i).collect();
                    reader.read_pixels(w, idx, ChunkColumns::default())
                })
                .collect::<Result<Vec<_>, CubeError>>()?;
            let mut rows = Rows::new(band_names.len());
            for ((_, pixels), columns) in wave.iter().zip(read) {
                for (p, (_, target)) in pixels.iter().enumerate() {
                    let s = &samples[target.sample];
                    let range = columns.range(p);
                    if range.is_empty() {
                        skipped.push(Skipped {
                            sample_id: s.id,
                            pixel: Some((*tile, target.row, target.col)),
                            reason: SkipReason::NoValidObservation,
                        });
                        continue;
                    }
                    written_samples[target.sample] = true;
                    push_row(&mut rows, s, *tile, &geo, target, &columns, range);
                }
            }
            writer.write(rows)?;
        }
    }
    if let Some(writer) = writer {
        summary.pixels = writer.rows();
        writer.finish()?;
    }
    summary.samples_written = written_samples.iter().filter(|w| **w).count();
    skipped.sort();
    for s in &skipped {
        match s.reason {
            SkipReason::OffCube => summary.off_cube += 1,
            SkipReason::NoValidObservation => summary.no_valid_observation += 1,
            SkipReason::DuplicateOf(_) => summary.duplicates += 1,
            SkipReason::LabelMissing => summary.label_missing += 1,
        }
    }
    summary.skipped = skipped;
    Ok(summary)
}

fn push_row(
    rows: &mut Rows,
    s: &Sample,
    tile: TileId,
    geo: &TileGeo,
    t: &Target,
    c: &ChunkColumns,
    range: std::ops::Range<usize>,
) {
    let (code, name) = s.attrs.label.clone().expect("only labelled samples are placed");
    rows.sample_id.push(s.id);
    rows.plot_id.push(s.attrs.plot_id.clone());
    rows.label.push(code);
    rows.label_name.push(name);
    rows.weight.push(s.attrs.weight);
    rows.year.push(s.attrs.year);
    rows.tile_id.push(tile.to_string());
    rows.row.push(t.row);
    rows.col.push(t.col);
    let (x, y) = geo.centre(t.row, t.col);
    rows.x.push(x);
    rows.y.push(y);
    rows.date.extend_from_slice(&c.date[range.clone()]);
    rows.sensor.extend_from_slice(&c.sensor[range.clone()]);
    for (dst, src) in rows.bands.iter_mut().zip(&c.bands) {
        dst.extend_from_slice(&src[range.clone()]);
    }
    rows.offsets.push(rows.date.len() as i32);
}

/// A tile's sample pixels grouped by the files' blocks: (block window, its pixels as (index in the
/// window, target), ascending), blocks in row-major order.
fn block_windows(plan: &ExtractPlan, targets: Vec<Target>) -> Vec<(PixelWindow, Vec<(u32, Target)>)> {
    let (bw, bh) = (plan.scan.block.0.max(1), plan.scan.block.1.max(1));
    let (cols, rows) = plan.scan.size;
    let mut blocks: BTreeMap<(usize, usize), Vec<(u32, Target)>> = BTreeMap::new();
    for t in targets {
        let (br, bc) = (t.row as usize / bh, t.col as usize / bw);
        let w = PixelWindow::new(br * bh, bc * bw, bh.min(rows - br * bh), bw.min(cols - bc * bw));
        let idx = (t.row as usize - w.row) * w.cols + (t.col as usize - w.col);
        blocks.entry((br, bc)).or_default().push((idx as u32, t));
    }
    blocks
        .into_iter()
        .map(|((br, bc), mut px)| {
            px.sort_by_key(|p| p.0);
            let w = PixelWindow::new(br * bh, bc * bw, bh.min(rows - br * bh), bw.min(cols - bc * bw));
            (w, px)
        })
        .collect()
}

/// The table's file metadata (strings): docs/formats.md, "Training table".
fn file_metadata(
    req: &SampleRequest,
    first: Option<&ExtractPlan>,
    crs_wkt: &str,
    classes: &[SpeciesClass],
    plans: &[Option<ExtractPlan>],
) -> HashMap<String, String> {
    let read: Vec<&ExtractPlan> = plans.iter().flatten().collect();
    // Sensors read on any tile, in the order of the request.
    let sensors: Vec<String> = first
        .map(|p| {
            p.sensors
                .iter()
                .filter(|s| read.iter().any(|q| q.sensors_read().contains(s)))
                .map(|s| format!("{}={}", s.name(), s.code()))
                .collect()
        })
        .unwrap_or_default();
    let date_start = read
        .iter()
        .filter_map(|p| p.scan.acquisitions.first().map(|a| a.date))
        .min();
    let date_end = read
        .iter()
        .filter_map(|p| p.scan.acquisitions.last().map(|a| a.date))
        .max();
    let mut m = HashMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(format!("treesits.{k}"), v);
    };
    put("format", table::FORMAT_NAME.into());
    put("format_version", table::FORMAT_VERSION.to_string());
    put("cube", req.cube.clone());
    put("crs_wkt", crs_wkt.to_string());
    put(
        "band_names",
        first.map(|p| p.scan.band_names.join(",")).unwrap_or_default(),
    );
    put("sensors", sensors.join(","));
    put("scale", BOA_SCALE.to_string());
    put("nodata", BOA_NODATA.to_string());
    put(
        "date_start",
        date_start
            .or(req.start)
            .map(|d| d.to_string())
            .unwrap_or_default(),
    );
    put(
        "date_end",
        date_end.or(req.end).map(|d| d.to_string()).unwrap_or_default(),
    );
    put(
        "qai_screen",
        first.map_or_else(|| req.screen.clone(), |p| p.screen.to_string()),
    );
    put("samples", req.samples.clone());
    put("label_field", req.label.clone());
    put("classes", classes_json(classes));
    put(
        "software_version",
        concat!("treesits ", env!("CARGO_PKG_VERSION")).to_string(),
    );
    m
}

/// Writes the report CSV: one line per sample (or polygon pixel) not written.
pub fn write_report(path: &Path, skipped: &[Skipped]) -> Result<(), SampleError> {
    let mut text = String::from("sample_id,tile_id,row,col,reason\n");
    for s in skipped {
        let (t, r, c) = match s.pixel {
            Some((t, r, c)) => (t.to_string(), r.to_string(), c.to_string()),
            None => Default::default(),
        };
        text.push_str(&format!("{},{t},{r},{c},{}\n", s.sample_id, s.reason));
    }
    treesits_core::atomic::write_bytes(path, text.as_bytes()).map_err(|source| SampleError::Report {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_modes_parse() {
        assert_eq!("all".parse::<PolygonMode>().unwrap(), PolygonMode::All);
        assert_eq!("centre".parse::<PolygonMode>().unwrap(), PolygonMode::Centre);
        assert!("middle".parse::<PolygonMode>().is_err());
    }

    #[test]
    fn skip_reasons_read_as_documented() {
        assert_eq!(SkipReason::DuplicateOf(7).to_string(), "duplicate_of:7");
        assert_eq!(SkipReason::OffCube.to_string(), "off_cube");
        assert_eq!(SkipReason::NoValidObservation.to_string(), "no_valid_observation");
        assert_eq!(SkipReason::LabelMissing.to_string(), "label_missing");
    }

    #[test]
    fn pixels_are_found_on_the_tiles_grid() {
        let geo = TileGeo {
            gt: [100.0, 10.0, 0.0, 1000.0, 0.0, -10.0],
            size: (50, 40),
        };
        assert_eq!(geo.pixel_of(100.0, 1000.0), Some((0, 0)));
        assert_eq!(geo.pixel_of(125.0, 975.0), Some((2, 2)));
        assert_eq!(geo.pixel_of(99.9, 1000.0), None);
        assert_eq!(geo.pixel_of(600.0, 990.0), None);
        assert_eq!(geo.centre(2, 2), (125.0, 975.0));
    }

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Geometry {
        Geometry::from_wkt(&format!(
            "POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
        ))
        .unwrap()
    }

    #[test]
    fn polygons_take_the_pixels_whose_centres_are_inside() {
        let geo = TileGeo {
            gt: [0.0, 10.0, 0.0, 100.0, 0.0, -10.0],
            size: (10, 10),
        };
        // x 12..38 holds the centres of columns 1, 2, 3 (15, 25, 35); y 61..79 those of rows 2, 3.
        let g = square(12.0, 61.0, 38.0, 79.0);
        let e = g.envelope();
        let px = polygon_pixels(&geo, &g.wkb().unwrap(), [e.MinX, e.MinY, e.MaxX, e.MaxY]).unwrap();
        assert_eq!(px, vec![(2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)]);
        // Beyond the tile's edge: only the pixels on the tile.
        let g = square(-30.0, 81.0, 14.0, 99.0);
        let e = g.envelope();
        let px = polygon_pixels(&geo, &g.wkb().unwrap(), [e.MinX, e.MinY, e.MaxX, e.MaxY]).unwrap();
        assert_eq!(px, vec![(0, 0), (1, 0)]);
        // Too small to hold a centre: none (centre mode then takes the centroid's pixel).
        let g = square(11.0, 61.0, 14.0, 64.0);
        let e = g.envelope();
        let px = polygon_pixels(&geo, &g.wkb().unwrap(), [e.MinX, e.MinY, e.MaxX, e.MaxY]).unwrap();
        assert!(px.is_empty());
        let (cx, cy) = centroid(&g, [e.MinX, e.MinY, e.MaxX, e.MaxY]);
        assert!((cx - 12.5).abs() < 1e-9 && (cy - 62.5).abs() < 1e-9, "{cx} {cy}");
        assert_eq!(geo.pixel_of(cx, cy), Some((3, 1)));
    }
}
