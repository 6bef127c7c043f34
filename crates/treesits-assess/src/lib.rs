//! Accuracy assessment of a class map against reference data: points (any OGR vector, a class code or
//! name per point) or reference rasters on the map's grid (compared pixel by pixel).
//!
//! The result holds the sample confusion matrix (rows = reference, columns = map), the unweighted
//! accuracies (overall, Cohen's kappa, precision/recall/F1) and the area-adjusted estimates of
//! Olofsson et al. (2014) with the map classes as strata and the map's pixel counts as stratum sizes
//! ([`stats`]). [`report`] writes it as JSON and Markdown.
//!
//! Rasters are read in strips of rows, in parallel (one GDAL handle per worker), so memory is a few
//! strips whatever the map's size.

pub mod report;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;

use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::vector::{LayerAccess, OGRwkbGeometryType};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags, Metadata};
use rayon::prelude::*;
use treesits_core::value_set::ValueSet;

use treesits_core::names::CLASSES_METADATA_KEY;
use treesits_gdal::cog::read_category_names;
use treesits_gdal::srs::gis_order;

use stats::{area_adjusted, sample_accuracy, AreaAdjusted, Confusion, SampleAccuracy};

/// Rows per strip when rasters are streamed.
const STRIP_ROWS: usize = 256;

/// Why an assessment could not be made. Every message names the input and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    #[error(
        "cannot open --map {path} as a raster ({reason}): give the class GeoTIFF or VRT that mosaic wrote"
    )]
    MapUnreadable { path: String, reason: String },
    #[error("--map {path} holds {kind} values: assess reads Byte class rasters (codes 0-254, nodata 255)")]
    MapNotByte { path: String, kind: String },
    #[error("--map {path} has no coordinate reference system: assign one (gdal_edit.py -a_srs EPSG:…)")]
    MapNoCrs { path: String },
    #[error("cannot open --reference {path} ({reason}): give a point vector (GeoPackage, Shapefile, GeoJSON, …) or a class raster")]
    ReferenceUnreadable { path: String, reason: String },
    #[error("--reference {path} has no layer named '{layer}': its layers are {available}")]
    NoSuchLayer {
        path: String,
        layer: String,
        available: String,
    },
    #[error("--reference {path} has {count} layers ({available}): choose one with --layer")]
    AmbiguousLayer {
        path: String,
        count: usize,
        available: String,
    },
    #[error("layer '{layer}' of --reference {path} has no field '{field}': its fields are {available}; choose one with --field")]
    NoSuchField {
        path: String,
        layer: String,
        field: String,
        available: String,
    },
    #[error("layer '{layer}' of --reference {path} has no coordinate reference system: assign one (ogr2ogr -a_srs EPSG:…)")]
    ReferenceNoCrs { path: String, layer: String },
    #[error("cannot reproject --reference {path} onto the map's CRS: {reason}")]
    Reproject { path: String, reason: String },
    #[error("feature {fid} of --reference {path} is a {kind}: reference samples are points")]
    NotPoint { path: String, fid: u64, kind: String },
    #[error("feature {fid} of --reference {path}: '{value}' in field '{field}' is neither a class code (0-254) nor a class name ({known})")]
    UnknownClass {
        path: String,
        fid: u64,
        field: String,
        value: String,
        known: String,
    },
    #[error("--reference {path} is not on the map's grid ({reason}): resample it onto the map's grid first: {hint}")]
    GridMismatch {
        path: String,
        reason: String,
        hint: String,
    },
    #[error("--reference rasters {a} and {b} overlap: give non-overlapping tiles (or one VRT of them)")]
    ReferencesOverlap { a: String, b: String },
    #[error("--reference {path} does not overlap --map {map}: check that both cover the same area")]
    NoOverlap { path: String, map: String },
    #[error("{what}")]
    NoSamples { what: String },
    #[error("--reference: give either point vectors or rasters, not both ({points} and {raster})")]
    MixedReferences { points: String, raster: String },
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
}

/// A class code and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLabel {
    pub code: u8,
    pub name: String,
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct AssessOptions {
    /// The class map as GDAL opens it (GeoTIFF, VRT, `/vsis3/…`).
    pub map: String,
    /// Point vectors or rasters, as GDAL opens them.
    pub references: Vec<String>,
    /// Layer of a point vector (default: its only layer).
    pub layer: Option<String>,
    /// Attribute holding each point's class, as a code or a class name.
    pub field: String,
    /// The map's nodata value (default: the band's, else 255).
    pub nodata: Option<u8>,
    /// Codes left out on both sides, as if they were nodata.
    pub ignore: Option<ValueSet>,
    /// Class names that replace those the map carries.
    pub classes: Option<Vec<ClassLabel>>,
}

/// How the reference was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    Points,
    Raster,
}

impl ReferenceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReferenceKind::Points => "points",
            ReferenceKind::Raster => "raster",
        }
    }
}

/// Reference samples that did not enter the confusion matrix, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Points outside the map's extent.
    pub outside_map: u64,
    /// Map pixel is nodata.
    pub map_nodata: u64,
    /// Reference pixel is nodata (rasters) or the point's class is empty or the nodata code.
    pub reference_nodata: u64,
    /// The map or the reference class is one of `--ignore`.
    pub ignored: u64,
}

/// The pixel size and, for projected maps, the area of a pixel in square metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelArea {
    pub size_x: f64,
    pub size_y: f64,
    /// `None` for a map in geographic coordinates (areas are then given in pixels).
    pub square_metres: Option<f64>,
}

/// Everything an accuracy report says.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub map: String,
    pub references: Vec<String>,
    pub kind: ReferenceKind,
    /// The attribute read from point references.
    pub field: Option<String>,
    pub map_nodata: u8,
    pub ignore: Option<String>,
    /// The classes of the matrices, in code order: those mapped or found in the reference.
    pub classes: Vec<ClassLabel>,
    /// Rows = reference class, columns = map class, indices into `classes`.
    pub confusion: Confusion,
    /// Valid map pixels per class (the strata sizes).
    pub mapped_pixels: Vec<u64>,
    pub pixel: PixelArea,
    pub dropped: Dropped,
    pub sample: SampleAccuracy,
    pub area: AreaAdjusted,
}

fn open(path: &str, flags: GdalOpenFlags) -> gdal::errors::Result<Dataset> {
    Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: flags | GdalOpenFlags::GDAL_OF_READONLY,
            ..Default::default()
        },
    )
}

fn reason_of(path: &str, e: gdal::errors::GdalError) -> String {
    if !path.starts_with("/vsi") && !Path::new(path).exists() {
        "no such file".into()
    } else {
        e.to_string()
    }
}

/// Grid facts of a raster.
#[derive(Debug, Clone)]
struct RasterGrid {
    size: (usize, usize),
    gt: [f64; 6],
    srs: Option<SpatialRef>,
}

fn raster_grid(ds: &Dataset) -> RasterGrid {
    RasterGrid {
        size: ds.raster_size(),
        gt: ds.geo_transform().unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
        srs: ds.spatial_ref().ok(),
    }
}

/// The class map, opened.
struct MapInfo {
    grid: RasterGrid,
    nodata: u8,
    labels: BTreeMap<u8, String>,
}

fn labels_from_json(json: &str) -> BTreeMap<u8, String> {
    let mut out = BTreeMap::new();
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(json) {
        for item in items {
            let code = item.get("code").and_then(|c| c.as_u64());
            let name = item.get("name").and_then(|n| n.as_str());
            if let (Some(code), Some(name)) = (code, name) {
                if code < 255 {
                    out.insert(code as u8, name.to_string());
                }
            }
        }
    }
    out
}

/// Class names a raster carries: `TREESITS_CLASSES` (mosaic), category names (GDAL), or the `CLASSES`
/// band item of the synthetic truth (`spruce,pine,…` by code).
fn raster_labels(ds: &Dataset) -> BTreeMap<u8, String> {
    if let Some(json) = ds.metadata_item(CLASSES_METADATA_KEY, "") {
        let l = labels_from_json(&json);
        if !l.is_empty() {
            return l;
        }
    }
    let Ok(band) = ds.rasterband(1) else {
        return BTreeMap::new();
    };
    let from_list = |names: Vec<String>| -> BTreeMap<u8, String> {
        names
            .into_iter()
            .enumerate()
            .filter(|(i, n)| *i < 255 && !n.trim().is_empty())
            .map(|(i, n)| (i as u8, n.trim().to_string()))
            .collect()
    };
    let cats = from_list(read_category_names(&band));
    if !cats.is_empty() {
        return cats;
    }
    band.metadata_item("CLASSES", "")
        .map(|s| from_list(s.split(',').map(str::to_string).collect()))
        .unwrap_or_default()
}

fn open_map(opts: &AssessOptions) -> Result<MapInfo, AssessError> {
    let path = &opts.map;
    let ds = open(path, GdalOpenFlags::GDAL_OF_RASTER).map_err(|e| AssessError::MapUnreadable {
        path: path.clone(),
        reason: reason_of(path, e),
    })?;
    let band = ds.rasterband(1).map_err(|e| AssessError::MapUnreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let kind = band.band_type();
    if kind != gdal::raster::GdalDataType::UInt8 {
        return Err(AssessError::MapNotByte {
            path: path.clone(),
            kind: kind.name(),
        });
    }
    let nodata = opts.nodata.unwrap_or_else(|| {
        band.no_data_value()
            .filter(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0)
            .map_or(255, |v| v as u8)
    });
    let grid = raster_grid(&ds);
    if grid.srs.is_none() {
        return Err(AssessError::MapNoCrs { path: path.clone() });
    }
    Ok(MapInfo {
        grid,
        nodata,
        labels: raster_labels(&ds),
    })
}

fn pixel_area(grid: &RasterGrid) -> PixelArea {
    let gt = grid.gt;
    let px = (gt[1] * gt[5] - gt[2] * gt[4]).abs();
    let square_metres = grid
        .srs
        .as_ref()
        .filter(|s| s.is_projected())
        .map(|s| px * s.linear_units() * s.linear_units());
    PixelArea {
        size_x: gt[1].abs(),
        size_y: gt[5].abs(),
        square_metres,
    }
}

/// Per-code histograms: `map[m]` valid map pixels; `pairs[r * 256 + m]` reference × map samples.
#[derive(Debug, Clone)]
struct Tally {
    map: Vec<u64>,
    pairs: Vec<u64>,
    dropped: Dropped,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            map: vec![0; 256],
            pairs: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    fn pair(&mut self, r: u8, m: u8) {
        if self.pairs.is_empty() {
            self.pairs = vec![0; 256 * 256];
        }
        self.pairs[usize::from(r) * 256 + usize::from(m)] += 1;
    }

    fn merge(mut self, o: Tally) -> Tally {
        for (a, b) in self.map.iter_mut().zip(&o.map) {
            *a += b;
        }
        if self.pairs.is_empty() {
            self.pairs = o.pairs;
        } else if !o.pairs.is_empty() {
            for (a, b) in self.pairs.iter_mut().zip(&o.pairs) {
                *a += b;
            }
        }
        self.dropped.outside_map += o.dropped.outside_map;
        self.dropped.map_nodata += o.dropped.map_nodata;
        self.dropped.reference_nodata += o.dropped.reference_nodata;
        self.dropped.ignored += o.dropped.ignored;
        self
    }
}

/// Which codes are left out (`--ignore`), as a table.
fn ignore_table(ignore: &Option<ValueSet>) -> [bool; 256] {
    let mut t = [false; 256];
    if let Some(set) = ignore {
        for (v, slot) in t.iter_mut().enumerate() {
            *slot = set.contains(v as f64);
        }
    }
    t
}

fn read_strip(
    ds: &Dataset,
    path: &str,
    col: usize,
    row: usize,
    cols: usize,
    rows: usize,
) -> Result<Vec<u8>, AssessError> {
    ds.rasterband(1)
        .and_then(|b| b.read_as::<u8>((col as isize, row as isize), (cols, rows), (cols, rows), None))
        .map(|buf| buf.into_shape_and_vec().1)
        .map_err(|e| AssessError::Read {
            path: path.to_string(),
            reason: e.to_string(),
        })
}

/// Counts the valid map pixels per code, streaming strips in parallel.
fn count_map(path: &str, grid: &RasterGrid, nodata: u8, ignored: &[bool; 256]) -> Result<Tally, AssessError> {
    let (cols, rows) = grid.size;
    let strips = rows.div_ceil(STRIP_ROWS);
    (0..strips)
        .into_par_iter()
        .map_init(
            || open(path, GdalOpenFlags::GDAL_OF_RASTER),
            |ds, s| {
                let ds = ds.as_ref().map_err(|e| AssessError::Read {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
                let row = s * STRIP_ROWS;
                let h = STRIP_ROWS.min(rows - row);
                let data = read_strip(ds, path, 0, row, cols, h)?;
                let mut t = Tally::new();
                for v in data {
                    t.map[usize::from(v)] += 1;
                }
                t.map[usize::from(nodata)] = 0;
                for (v, &ign) in ignored.iter().enumerate() {
                    if ign {
                        t.map[v] = 0;
                    }
                }
                Ok(t)
            },
        )
        .try_reduce(Tally::new, |a, b| Ok(a.merge(b)))
}

/// The window of the map a reference raster covers, in map pixels: (col, row, cols, rows) and the
/// reference pixel of its corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Overlap {
    map_col: usize,
    map_row: usize,
    ref_col: usize,
    ref_row: usize,
    cols: usize,
    rows: usize,
}

fn overlap(
    map: &RasterGrid,
    reference: &RasterGrid,
    path: &str,
    map_path: &str,
) -> Result<Overlap, AssessError> {
    let (m, r) = (map.gt, reference.gt);
    let mismatch = |reason: String| {
        let (xmax, ymin) = (m[0] + m[1] * map.size.0 as f64, m[3] + m[5] * map.size.1 as f64);
        let crs = map
            .srs
            .as_ref()
            .and_then(|s| s.auth_code().ok().map(|c| format!("EPSG:{c}")))
            .unwrap_or_else(|| "<the map's CRS>".into());
        AssessError::GridMismatch {
            path: path.to_string(),
            reason,
            hint: format!(
                "gdalwarp -t_srs {crs} -te {} {ymin} {xmax} {} -tr {} {} -r near {path} on_map_grid.tif",
                m[0], m[3], m[1], -m[5]
            ),
        }
    };
    match (&map.srs, &reference.srs) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), None) => return Err(mismatch("it has no coordinate reference system".into())),
        _ => {
            return Err(mismatch(
                "its coordinate reference system differs from the map's".into(),
            ))
        }
    }
    if m[2] != 0.0 || m[4] != 0.0 || r[2] != 0.0 || r[4] != 0.0 {
        return Err(mismatch("rotated grids are not supported".into()));
    }
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    if !same(m[1], r[1]) || !same(m[5], r[5]) {
        return Err(mismatch(format!(
            "pixel size {} x {} vs the map's {} x {}",
            r[1], -r[5], m[1], -m[5]
        )));
    }
    let dc = (r[0] - m[0]) / m[1];
    let dr = (r[3] - m[3]) / m[5];
    if (dc - dc.round()).abs() > 1e-6 || (dr - dr.round()).abs() > 1e-6 {
        return Err(mismatch(format!(
            "its origin is {:.3} columns and {:.3} rows off the map's pixel edges",
            dc - dc.round(),
            dr - dr.round()
        )));
    }
    let (dc, dr) = (dc.round() as i64, dr.round() as i64);
    let c0 = dc.max(0);
    let r0 = dr.max(0);
    let c1 = (dc + reference.size.0 as i64).min(map.size.0 as i64);
    let r1 = (dr + reference.size.1 as i64).min(map.size.1 as i64);
    if c1 <= c0 || r1 <= r0 {
        return Err(AssessError::NoOverlap {
            path: path.to_string(),
            map: map_path.to_string(),
        });
    }
    Ok(Overlap {
        map_col: c0 as usize,
        map_row: r0 as usize,
        ref_col: (c0 - dc) as usize,
        ref_row: (r0 - dr) as usize,
        cols: (c1 - c0) as usize,
        rows: (r1 - r0) as usize,
    })
}

/// Compares the map with one reference raster over their overlap, pixel by pixel.
fn compare_raster(
    map_path: &str,
    ref_path: &str,
    o: Overlap,
    map_nodata: u8,
    ref_nodata: Option<u8>,
    ignored: &[bool; 256],
) -> Result<Tally, AssessError> {
    let strips = o.rows.div_ceil(STRIP_ROWS);
    (0..strips)
        .into_par_iter()
        .map_init(
            || {
                (
                    open(map_path, GdalOpenFlags::GDAL_OF_RASTER),
                    open(ref_path, GdalOpenFlags::GDAL_OF_RASTER),
                )
            },
            |(m, r), s| {
                let fail = |p: &str, e: &gdal::errors::GdalError| AssessError::Read {
                    path: p.to_string(),
                    reason: e.to_string(),
                };
                let m = m.as_ref().map_err(|e| fail(map_path, e))?;
                let r = r.as_ref().map_err(|e| fail(ref_path, e))?;
                let off = s * STRIP_ROWS;
                let h = STRIP_ROWS.min(o.rows - off);
                let mv = read_strip(m, map_path, o.map_col, o.map_row + off, o.cols, h)?;
                let rv = read_strip(r, ref_path, o.ref_col, o.ref_row + off, o.cols, h)?;
                let mut t = Tally::new();
                for (&mc, &rc) in mv.iter().zip(&rv) {
                    if Some(rc) == ref_nodata {
                        t.dropped.reference_nodata += 1;
                    } else if mc == map_nodata {
                        t.dropped.map_nodata += 1;
                    } else if ignored[usize::from(mc)] || ignored[usize::from(rc)] {
                        t.dropped.ignored += 1;
                    } else {
                        t.pair(rc, mc);
                    }
                }
                Ok(t)
            },
        )
        .try_reduce(Tally::new, |a, b| Ok(a.merge(b)))
}

/// Reads the class of every point of a vector and looks up the map under it.
fn compare_points(
    path: &str,
    ds: &Dataset,
    opts: &AssessOptions,
    map: &MapInfo,
    labels: &BTreeMap<u8, String>,
    ignored: &[bool; 256],
) -> Result<Tally, AssessError> {
    let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
    let mut layer = match &opts.layer {
        Some(name) => ds.layer_by_name(name).map_err(|_| AssessError::NoSuchLayer {
            path: path.to_string(),
            layer: name.clone(),
            available: names.join(", "),
        })?,
        None if names.len() == 1 => ds.layer(0).map_err(|e| AssessError::ReferenceUnreadable {
            path: path.to_string(),
            reason: e.to_string(),
        })?,
        None => {
            return Err(AssessError::AmbiguousLayer {
                path: path.to_string(),
                count: names.len(),
                available: names.join(", "),
            })
        }
    };
    let layer_name = layer.name();
    let fields: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
    let Some(field_idx) = fields.iter().position(|f| f.eq_ignore_ascii_case(&opts.field)) else {
        return Err(AssessError::NoSuchField {
            path: path.to_string(),
            layer: layer_name,
            field: opts.field.clone(),
            available: if fields.is_empty() {
                "none".into()
            } else {
                fields.join(", ")
            },
        });
    };
    // A GeoPackage without CRS reports GDAL's placeholders ("Undefined geographic SRS", srs_id 0,
    // or "Undefined cartesian SRS", -1): coordinates in them mean nothing.
    let srs = layer
        .spatial_ref()
        .filter(|s| !s.name().is_some_and(|n| n.starts_with("Undefined ")))
        .ok_or_else(|| AssessError::ReferenceNoCrs {
            path: path.to_string(),
            layer: layer_name.clone(),
        })?;
    let reproject = |e: gdal::errors::GdalError| AssessError::Reproject {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let map_srs = map.grid.srs.clone().expect("the map has a CRS");
    let to_map = CoordTransform::new(&gis_order(srs), &gis_order(map_srs)).map_err(reproject)?;
    let by_name: BTreeMap<String, u8> = labels.iter().map(|(c, n)| (n.to_lowercase(), *c)).collect();
    let known = || {
        let v: Vec<String> = labels.iter().map(|(c, n)| format!("{c} = {n}")).collect();
        if v.is_empty() {
            "the map carries no class names".into()
        } else {
            v.join(", ")
        }
    };

    // (x, y) in map CRS and reference code of every point.
    let mut points: Vec<(f64, f64, Option<u8>)> = Vec::new();
    for feature in layer.features() {
        let fid = feature.fid().unwrap_or(0);
        let Some(g) = feature.geometry() else { continue };
        if g.is_empty() {
            continue;
        }
        let kind = gdal::vector::geometry_type_flatten(g.geometry_type());
        let parts: Vec<(f64, f64)> = match kind {
            OGRwkbGeometryType::wkbPoint => {
                let (x, y, _) = g.get_point(0);
                vec![(x, y)]
            }
            OGRwkbGeometryType::wkbMultiPoint => (0..g.geometry_count())
                .map(|i| {
                    let (x, y, _) = g.get_geometry(i).get_point(0);
                    (x, y)
                })
                .collect(),
            _ => {
                return Err(AssessError::NotPoint {
                    path: path.to_string(),
                    fid,
                    kind: g.geometry_name(),
                })
            }
        };
        let value = feature
            .field_as_string(field_idx)
            .map_err(|e| AssessError::Read {
                path: path.to_string(),
                reason: e.to_string(),
            })?
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let code = match value {
            None => None,
            Some(v) => {
                let numeric = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.fract() == 0.0 && (0.0..=255.0).contains(x))
                    .map(|x| x as u8);
                match numeric.or_else(|| by_name.get(&v.to_lowercase()).copied()) {
                    Some(c) => Some(c),
                    None => {
                        return Err(AssessError::UnknownClass {
                            path: path.to_string(),
                            fid,
                            field: fields[field_idx].clone(),
                            value: v,
                            known: known(),
                        })
                    }
                }
            }
        };
        for (x, y) in parts {
            points.push((x, y, code));
        }
    }
    if !points.is_empty() {
        let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
        let mut zs = vec![0.0; xs.len()];
        to_map
            .transform_coords(&mut xs, &mut ys, &mut zs)
            .map_err(reproject)?;
        for (p, (x, y)) in points.iter_mut().zip(xs.into_iter().zip(ys)) {
            p.0 = x;
            p.1 = y;
        }
    }

    // Pixel of each point; read in row order so GDAL's block cache serves neighbours.
    let gt = map.grid.gt;
    let (cols, rows) = map.grid.size;
    let mut t = Tally::new();
    let mut pixels: Vec<(usize, usize, Option<u8>)> = Vec::with_capacity(points.len());
    for (x, y, code) in points {
        let c = ((x - gt[0]) / gt[1]).floor();
        let r = ((y - gt[3]) / gt[5]).floor();
        if !(c >= 0.0 && r >= 0.0 && c < cols as f64 && r < rows as f64) {
            t.dropped.outside_map += 1;
            continue;
        }
        pixels.push((r as usize, c as usize, code));
    }
    pixels.sort_unstable_by_key(|p| (p.0, p.1));
    let mds = open(&opts.map, GdalOpenFlags::GDAL_OF_RASTER).map_err(|e| AssessError::Read {
        path: opts.map.clone(),
        reason: e.to_string(),
    })?;
    for (r, c, code) in pixels {
        let mc = read_strip(&mds, &opts.map, c, r, 1, 1)?[0];
        match code {
            None => t.dropped.reference_nodata += 1,
            Some(rc) if rc == map.nodata => t.dropped.reference_nodata += 1,
            Some(_) if mc == map.nodata => t.dropped.map_nodata += 1,
            Some(rc) if ignored[usize::from(rc)] || ignored[usize::from(mc)] => t.dropped.ignored += 1,
            Some(rc) => t.pair(rc, mc),
        }
    }
    Ok(t)
}

enum Reference {
    Points(String, Dataset),
    Raster(String, Dataset),
}

fn open_reference(path: &str) -> Result<Reference, AssessError> {
    let ds = open(
        path,
        GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_VECTOR,
    )
    .map_err(|e| AssessError::ReferenceUnreadable {
        path: path.to_string(),
        reason: reason_of(path, e),
    })?;
    if ds.layer_count() > 0 {
        Ok(Reference::Points(path.to_string(), ds))
    } else if ds.raster_count() > 0 {
        Ok(Reference::Raster(path.to_string(), ds))
    } else {
        Err(AssessError::ReferenceUnreadable {
            path: path.to_string(),
            reason: "it holds neither layers nor raster bands".into(),
        })
    }
}

/// Runs the assessment.
pub fn assess(opts: &AssessOptions) -> Result<Assessment, AssessError> {
    let map = open_map(opts)?;
    let ignored = ignore_table(&opts.ignore);
    let refs: Vec<Reference> = opts
        .references
        .iter()
        .map(|p| open_reference(p))
        .collect::<Result<_, _>>()?;
    let first_points = refs.iter().find_map(|r| match r {
        Reference::Points(p, _) => Some(p.clone()),
        _ => None,
    });
    let first_raster = refs.iter().find_map(|r| match r {
        Reference::Raster(p, _) => Some(p.clone()),
        _ => None,
    });
    let kind = match (first_points, first_raster) {
        (Some(points), Some(raster)) => return Err(AssessError::MixedReferences { points, raster }),
        (Some(_), None) => ReferenceKind::Points,
        _ => ReferenceKind::Raster,
    };

    // Names: --classes, else the map's, else a reference raster's.
    let mut labels = map.labels.clone();
    for r in &refs {
        if let Reference::Raster(_, ds) = r {
            for (c, n) in raster_labels(ds) {
                labels.entry(c).or_insert(n);
            }
        }
    }
    if let Some(given) = &opts.classes {
        for l in given {
            labels.insert(l.code, l.name.clone());
        }
    }

    let map_counts = count_map(&opts.map, &map.grid, map.nodata, &ignored)?.map;
    let mut tally = Tally::new();
    let mut windows: Vec<(String, Overlap)> = Vec::new();
    let mut missed: Option<String> = None;
    for r in &refs {
        let t = match r {
            Reference::Points(path, ds) => compare_points(path, ds, opts, &map, &labels, &ignored)?,
            Reference::Raster(path, ds) => {
                let grid = raster_grid(ds);
                // Of several reference tiles some may lie beside the map (a clipped mosaic): those
                // are skipped; a single reference, or all of them, missing the map is an error.
                let o = match overlap(&map.grid, &grid, path, &opts.map) {
                    Err(AssessError::NoOverlap { .. }) if refs.len() > 1 => {
                        log::warn!("--reference {path} does not overlap the map: skipped");
                        missed.get_or_insert_with(|| path.clone());
                        continue;
                    }
                    other => other?,
                };
                for (other, w) in &windows {
                    let disjoint = o.map_col + o.cols <= w.map_col
                        || w.map_col + w.cols <= o.map_col
                        || o.map_row + o.rows <= w.map_row
                        || w.map_row + w.rows <= o.map_row;
                    if !disjoint {
                        return Err(AssessError::ReferencesOverlap {
                            a: other.clone(),
                            b: path.clone(),
                        });
                    }
                }
                windows.push((path.clone(), o));
                let ref_nodata = ds
                    .rasterband(1)
                    .ok()
                    .and_then(|b| b.no_data_value())
                    .filter(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0)
                    .map_or(Some(map.nodata), |v| Some(v as u8));
                compare_raster(&opts.map, path, o, map.nodata, ref_nodata, &ignored)?
            }
        };
        tally = tally.merge(t);
    }

    if windows.is_empty() {
        if let Some(path) = missed {
            return Err(AssessError::NoOverlap {
                path: format!("{path} (nor any other)"),
                map: opts.map.clone(),
            });
        }
    }
    let pairs = if tally.pairs.is_empty() {
        vec![0; 256 * 256]
    } else {
        tally.pairs
    };
    let samples: u64 = pairs.iter().sum();
    if samples == 0 {
        let d = &tally.dropped;
        return Err(AssessError::NoSamples {
            what: format!(
                "no reference sample of {} falls on a mapped pixel of --map {} ({} outside the map, {} on map nodata, {} without a reference class, {} ignored): check that both cover the same area",
                opts.references.join(", "),
                opts.map,
                d.outside_map,
                d.map_nodata,
                d.reference_nodata,
                d.ignored
            ),
        });
    }
    // Classes: every code mapped or found in the reference, in code order.
    let codes: Vec<u8> = (0..=255u8)
        .filter(|&c| {
            let ci = usize::from(c);
            map_counts[ci] > 0 || (0..256).any(|o| pairs[ci * 256 + o] > 0 || pairs[o * 256 + ci] > 0)
        })
        .collect();
    let mut confusion = Confusion::new(codes.len());
    for (ri, &rc) in codes.iter().enumerate() {
        for (mi, &mc) in codes.iter().enumerate() {
            confusion.add(ri, mi, pairs[usize::from(rc) * 256 + usize::from(mc)]);
        }
    }
    let mapped_pixels: Vec<u64> = codes.iter().map(|&c| map_counts[usize::from(c)]).collect();
    let classes = codes
        .iter()
        .map(|&code| ClassLabel {
            code,
            name: labels
                .get(&code)
                .cloned()
                .unwrap_or_else(|| format!("class {code}")),
        })
        .collect();
    let sample = sample_accuracy(&confusion);
    let area = area_adjusted(&confusion, &mapped_pixels);
    Ok(Assessment {
        map: opts.map.clone(),
        references: opts.references.clone(),
        kind,
        field: (kind == ReferenceKind::Points).then(|| opts.field.clone()),
        map_nodata: map.nodata,
        ignore: opts.ignore.as_ref().map(|s| s.to_string()),
        classes,
        confusion,
        mapped_pixels,
        pixel: pixel_area(&map.grid),
        dropped: tally.dropped,
        sample,
        area,
    })
}

/// Why a class list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClassLabelError {
    #[error("cannot read --classes {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("--classes item '{0}' is not CODE=NAME")]
    NotCodeName(String),
    #[error("--classes item '{0}': the code must be 0-254")]
    BadCode(String),
    #[error("--classes '{0}' names no class: give CODE=NAME pairs (0=spruce,1=pine) or a JSON class table")]
    NoClass(String),
}

/// Parses `--classes`: `0=spruce,1=pine,…` or a JSON class table (`[{"code":0,"name":"spruce"},…]`,
/// as mosaic stores in `TREESITS_CLASSES`), given inline or as a file.
pub fn parse_class_labels(arg: &str) -> Result<Vec<ClassLabel>, ClassLabelError> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|source| ClassLabelError::Read {
            path: arg.to_string(),
            source,
        })?
    } else {
        arg.to_string()
    };
    let trimmed = text.trim_start();
    let labels: Vec<ClassLabel> = if trimmed.starts_with('[') {
        labels_from_json(trimmed)
            .into_iter()
            .map(|(code, name)| ClassLabel { code, name })
            .collect()
    } else {
        let mut v = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (code, name) = item
                .split_once('=')
                .ok_or_else(|| ClassLabelError::NotCodeName(item.to_string()))?;
            let code: u8 = code
                .trim()
                .parse()
                .ok()
                .filter(|c| *c < 255)
                .ok_or_else(|| ClassLabelError::BadCode(item.to_string()))?;
            v.push(ClassLabel {
                code,
                name: name.trim().to_string(),
            });
        }
        v
    };
    if labels.is_empty() {
        return Err(ClassLabelError::NoClass(arg.to_string()));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_labels_parse_from_pairs_and_json() {
        let l = parse_class_labels("0=spruce, 6=beech").unwrap();
        assert_eq!(
            l,
            vec![
                ClassLabel {
                    code: 0,
                    name: "spruce".into()
                },
                ClassLabel {
                    code: 6,
                    name: "beech".into()
                }
            ]
        );
        let j = parse_class_labels(r#"[{"code":3,"name":"larch","colour":[1,2,3]}]"#).unwrap();
        assert_eq!(
            j,
            vec![ClassLabel {
                code: 3,
                name: "larch".into()
            }]
        );
        assert!(parse_class_labels("spruce")
            .unwrap_err()
            .to_string()
            .contains("CODE=NAME"));
        assert!(parse_class_labels("255=x")
            .unwrap_err()
            .to_string()
            .contains("0-254"));
        assert!(parse_class_labels("[]")
            .unwrap_err()
            .to_string()
            .contains("names no class"));
    }

    fn grid(gt: [f64; 6], size: (usize, usize)) -> RasterGrid {
        RasterGrid {
            size,
            gt,
            srs: Some(SpatialRef::from_epsg(3035).unwrap()),
        }
    }

    #[test]
    fn overlap_of_aligned_grids_is_found_in_both_pixel_spaces() {
        let map = grid([1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        // A reference tile starting 20 columns right of and 50 rows above the map.
        let r = grid([1200.0, 10.0, 0.0, 5500.0, 0.0, -10.0], (200, 80));
        let o = overlap(&map, &r, "r.tif", "m.tif").unwrap();
        assert_eq!(
            o,
            Overlap {
                map_col: 20,
                map_row: 0,
                ref_col: 0,
                ref_row: 50,
                cols: 80,
                rows: 30
            }
        );
    }

    #[test]
    fn misaligned_or_disjoint_grids_are_refused() {
        let map = grid([1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        let shifted = grid([1005.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        let e = overlap(&map, &shifted, "r.tif", "m.tif").unwrap_err().to_string();
        assert!(e.contains("0.500 columns"), "{e}");
        let coarse = grid([1000.0, 20.0, 0.0, 5000.0, 0.0, -20.0], (50, 50));
        let e = overlap(&map, &coarse, "r.tif", "m.tif").unwrap_err().to_string();
        assert!(e.contains("pixel size 20 x 20 vs the map's 10 x 10"), "{e}");
        let far = grid([100000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        assert!(matches!(
            overlap(&map, &far, "r.tif", "m.tif"),
            Err(AssessError::NoOverlap { .. })
        ));
        let mut other_crs = grid([1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        other_crs.srs = Some(SpatialRef::from_epsg(32632).unwrap());
        let e = overlap(&map, &other_crs, "r.tif", "m.tif")
            .unwrap_err()
            .to_string();
        assert!(e.contains("coordinate reference system differs"), "{e}");
    }

    #[test]
    fn labels_come_from_the_class_table_json() {
        let l = labels_from_json(
            r#"[{"code":0,"name":"spruce"},{"code":10,"name":"non-forest"},{"code":255,"name":"x"}]"#,
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[&10], "non-forest");
    }
}
