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

mod grid;
mod points;
pub mod report;
pub mod stats;
mod tally;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use gdal::{Dataset, GdalOpenFlags, Metadata};
use treesits_core::names::CLASSES_METADATA_KEY;
use treesits_core::value_set::ValueSet;
use treesits_gdal::cog::read_category_names;
use treesits_gdal::error::GdalCause;
use treesits_gdal::vector::{self, LayerError, OpenError};

pub use grid::{GridProblem, WarpHint};
pub use tally::ReadFailure;

use grid::{overlap, Overlap, RasterGrid};
use points::compare_points;
use stats::{area_adjusted, sample_accuracy, AreaAdjusted, Confusion, SampleAccuracy};
use tally::{compare_raster, count_map, PixelRules, Tally};

/// Why an assessment could not be made. Every message names the input and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    #[error(
        "cannot open --map {path} as a raster ({source}): give the class GeoTIFF or VRT that mosaic wrote"
    )]
    MapUnreadable { path: String, source: OpenError },
    #[error(
        "cannot read band 1 of --map {path} ({source}): give the class GeoTIFF or VRT that mosaic wrote"
    )]
    MapNoBand { path: String, source: GdalCause },
    #[error("--map {path} holds {kind} values: assess reads Byte class rasters (codes 0-254, nodata 255)")]
    MapNotByte { path: String, kind: String },
    #[error("--map {path} has no coordinate reference system: assign one (gdal_edit.py -a_srs EPSG:…)")]
    MapNoCrs { path: String },
    #[error("cannot open --reference {path} ({source}): give a point vector (GeoPackage, Shapefile, GeoJSON, …) or a class raster")]
    ReferenceUnreadable { path: String, source: OpenError },
    #[error("cannot open --reference {path} (it holds neither layers nor raster bands): give a point vector (GeoPackage, Shapefile, GeoJSON, …) or a class raster")]
    ReferenceEmpty { path: String },
    /// No layer named `--layer`, several layers and no `--layer`, or an unreadable layer.
    #[error("--reference {path} {source}")]
    Layer { path: String, source: LayerError },
    #[error("layer '{layer}' of --reference {path} has no field '{field}': its fields are {available}; choose one with --field")]
    NoSuchField {
        path: String,
        layer: String,
        field: String,
        available: String,
    },
    #[error("layer '{layer}' of --reference {path} has no coordinate reference system: assign one (ogr2ogr -a_srs EPSG:…)")]
    ReferenceNoCrs { path: String, layer: String },
    #[error("cannot reproject --reference {path} onto the map's CRS: {source}")]
    Reproject { path: String, source: GdalCause },
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
    #[error("cannot read feature {fid} of --reference {path} ({source}): check the layer with ogrinfo")]
    ReadFeature {
        path: String,
        fid: u64,
        source: GdalCause,
    },
    #[error("--reference {path} is not on the map's grid ({problem}): resample it onto the map's grid first: {hint}")]
    GridMismatch {
        path: String,
        #[source]
        problem: GridProblem,
        /// Boxed: errors stay small (clippy's `result_large_err`).
        hint: Box<WarpHint>,
    },
    #[error("--reference rasters {a} and {b} overlap: give non-overlapping tiles (or one VRT of them)")]
    ReferencesOverlap { a: String, b: String },
    #[error("--reference {path} does not overlap --map {map}: check that both cover the same area")]
    NoOverlap { path: String, map: String },
    /// Several reference rasters, none of them on the map; `first` is the first of them.
    #[error("--reference {first} (nor any other) does not overlap --map {map}: check that both cover the same area")]
    NoReferenceOverlaps { first: String, map: String },
    #[error(
        "no reference sample of {} falls on a mapped pixel of --map {map} ({} outside the map, {} on \
         map nodata, {} without a reference class, {} ignored): check that both cover the same area",
        .references.join(", "),
        .dropped.outside_map,
        .dropped.map_nodata,
        .dropped.reference_nodata,
        .dropped.ignored
    )]
    NoSamples {
        references: Vec<String>,
        map: String,
        dropped: Dropped,
    },
    #[error("--reference: give either point vectors or rasters, not both ({points} and {raster})")]
    MixedReferences { points: String, raster: String },
    #[error("cannot read {input} {path} ({source}): check that the file is complete (gdalinfo -checksum)")]
    Read {
        input: Input,
        path: String,
        source: ReadFailure,
    },
}

/// Which input a message is about, named by its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Map,
    Reference,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::Map => "--map",
            Input::Reference => "--reference",
        })
    }
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

/// The class map, opened.
pub(crate) struct MapInfo {
    pub(crate) grid: RasterGrid,
    pub(crate) nodata: u8,
    pub(crate) labels: BTreeMap<u8, String>,
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

/// A band's nodata value if it is a byte value (a whole number 0-255).
fn byte_nodata(band: &gdal::raster::RasterBand) -> Option<u8> {
    band.no_data_value()
        .filter(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0)
        .map(|v| v as u8)
}

fn open_map(opts: &AssessOptions) -> Result<MapInfo, AssessError> {
    let path = &opts.map;
    let ds = vector::open(
        path,
        GdalOpenFlags::GDAL_OF_RASTER,
        "not a raster GDAL recognises",
    )
    .map_err(|source| AssessError::MapUnreadable {
        path: path.clone(),
        source,
    })?;
    let band = ds.rasterband(1).map_err(|e| AssessError::MapNoBand {
        path: path.clone(),
        source: GdalCause::new(e),
    })?;
    let kind = band.band_type();
    if kind != gdal::raster::GdalDataType::UInt8 {
        return Err(AssessError::MapNotByte {
            path: path.clone(),
            kind: kind.name(),
        });
    }
    let nodata = opts.nodata.unwrap_or_else(|| byte_nodata(&band).unwrap_or(255));
    let grid = RasterGrid::of(&ds);
    if grid.srs.is_none() {
        return Err(AssessError::MapNoCrs { path: path.clone() });
    }
    Ok(MapInfo {
        grid,
        nodata,
        labels: raster_labels(&ds),
    })
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

enum Reference {
    Points(String, Dataset),
    Raster(String, Dataset),
}

impl Reference {
    fn open(path: &str) -> Result<Reference, AssessError> {
        let ds = vector::open(
            path,
            GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_VECTOR,
            "neither a vector nor a raster format GDAL recognises",
        )
        .map_err(|source| AssessError::ReferenceUnreadable {
            path: path.to_string(),
            source,
        })?;
        if ds.layer_count() > 0 {
            Ok(Reference::Points(path.to_string(), ds))
        } else if ds.raster_count() > 0 {
            Ok(Reference::Raster(path.to_string(), ds))
        } else {
            Err(AssessError::ReferenceEmpty {
                path: path.to_string(),
            })
        }
    }

    fn kind(&self) -> ReferenceKind {
        match self {
            Reference::Points(..) => ReferenceKind::Points,
            Reference::Raster(..) => ReferenceKind::Raster,
        }
    }

    fn path(&self) -> &str {
        match self {
            Reference::Points(p, _) | Reference::Raster(p, _) => p,
        }
    }
}

/// Points or rasters: one kind for all references.
fn reference_kind(refs: &[Reference]) -> Result<ReferenceKind, AssessError> {
    let first = |kind: ReferenceKind| {
        refs.iter()
            .find(|r| r.kind() == kind)
            .map(|r| r.path().to_string())
    };
    match (first(ReferenceKind::Points), first(ReferenceKind::Raster)) {
        (Some(points), Some(raster)) => Err(AssessError::MixedReferences { points, raster }),
        (Some(_), None) => Ok(ReferenceKind::Points),
        _ => Ok(ReferenceKind::Raster),
    }
}

/// Class names: `--classes`, else the map's, else a reference raster's.
fn class_names(map: &MapInfo, refs: &[Reference], given: Option<&[ClassLabel]>) -> BTreeMap<u8, String> {
    let mut labels = map.labels.clone();
    for r in refs {
        if let Reference::Raster(_, ds) = r {
            for (c, n) in raster_labels(ds) {
                labels.entry(c).or_insert(n);
            }
        }
    }
    for l in given.unwrap_or_default() {
        labels.insert(l.code, l.name.clone());
    }
    labels
}

/// The map windows that the reference rasters cover so far.
#[derive(Default)]
struct Windows {
    placed: Vec<(String, Overlap)>,
    /// The first reference raster found beside the map.
    missed: Option<String>,
}

impl Windows {
    /// The window of the reference raster at `path`, refused if it overlaps one placed before;
    /// `None` when it misses the map and is one of `several`.
    fn place(
        &mut self,
        path: &str,
        ds: &Dataset,
        map: &MapInfo,
        map_path: &str,
        several: bool,
    ) -> Result<Option<Overlap>, AssessError> {
        // Of several reference tiles some may lie beside the map (a clipped mosaic): those are
        // skipped; a single reference, or all of them, missing the map is an error.
        let o = match overlap(&map.grid, &RasterGrid::of(ds), path, map_path) {
            Err(AssessError::NoOverlap { .. }) if several => {
                log::warn!("--reference {path} does not overlap the map: skipped");
                self.missed.get_or_insert_with(|| path.to_string());
                return Ok(None);
            }
            other => other?,
        };
        if let Some((other, _)) = self.placed.iter().find(|(_, w)| !w.is_disjoint(&o)) {
            return Err(AssessError::ReferencesOverlap {
                a: other.clone(),
                b: path.to_string(),
            });
        }
        self.placed.push((path.to_string(), o));
        Ok(Some(o))
    }

    /// Refuses reference rasters that all lie beside the map.
    fn check_some_placed(&self, map_path: &str) -> Result<(), AssessError> {
        match &self.missed {
            Some(first) if self.placed.is_empty() => Err(AssessError::NoReferenceOverlaps {
                first: first.clone(),
                map: map_path.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// The samples of every reference against the map.
fn compare_references(
    refs: &[Reference],
    opts: &AssessOptions,
    map: &MapInfo,
    labels: &BTreeMap<u8, String>,
    ignored: &[bool; 256],
) -> Result<Tally, AssessError> {
    let mut tally = Tally::new();
    let mut windows = Windows::default();
    for r in refs {
        let t = match r {
            Reference::Points(path, ds) => compare_points(path, ds, opts, map, labels, ignored)?,
            Reference::Raster(path, ds) => {
                let Some(o) = windows.place(path, ds, map, &opts.map, refs.len() > 1)? else {
                    continue;
                };
                let rules = PixelRules {
                    map_nodata: map.nodata,
                    // Without a nodata value of its own, the reference shares the map's.
                    ref_nodata: Some(
                        ds.rasterband(1)
                            .ok()
                            .and_then(|b| byte_nodata(&b))
                            .unwrap_or(map.nodata),
                    ),
                    ignored,
                };
                compare_raster(&opts.map, path, o, &rules)?
            }
        };
        tally = tally.merge(t);
    }
    windows.check_some_placed(&opts.map)?;
    Ok(tally)
}

/// The confusion matrix over the classes mapped or found in the reference, in code order.
struct Matrix {
    classes: Vec<ClassLabel>,
    confusion: Confusion,
    /// Valid map pixels per class.
    mapped_pixels: Vec<u64>,
}

impl Matrix {
    /// From per-code counts: `map_counts[m]` map pixels, `pairs[r * 256 + m]` samples.
    fn from_codes(map_counts: &[u64], pairs: &[u64], labels: &BTreeMap<u8, String>) -> Matrix {
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
        Matrix {
            mapped_pixels: codes.iter().map(|&c| map_counts[usize::from(c)]).collect(),
            classes: codes
                .iter()
                .map(|&code| ClassLabel {
                    code,
                    name: labels
                        .get(&code)
                        .cloned()
                        .unwrap_or_else(|| format!("class {code}")),
                })
                .collect(),
            confusion,
        }
    }
}

/// Runs the assessment.
pub fn assess(opts: &AssessOptions) -> Result<Assessment, AssessError> {
    let map = open_map(opts)?;
    let ignored = ignore_table(&opts.ignore);
    let refs: Vec<Reference> = opts
        .references
        .iter()
        .map(|p| Reference::open(p))
        .collect::<Result<_, _>>()?;
    let kind = reference_kind(&refs)?;
    let labels = class_names(&map, &refs, opts.classes.as_deref());

    let map_counts = count_map(&opts.map, &map.grid, map.nodata, &ignored)?.map;
    let (pairs, dropped) = compare_references(&refs, opts, &map, &labels, &ignored)?.into_pairs();
    if pairs.iter().all(|&n| n == 0) {
        return Err(AssessError::NoSamples {
            references: opts.references.clone(),
            map: opts.map.clone(),
            dropped,
        });
    }
    let m = Matrix::from_codes(&map_counts, &pairs, &labels);
    Ok(Assessment {
        map: opts.map.clone(),
        references: opts.references.clone(),
        kind,
        field: (kind == ReferenceKind::Points).then(|| opts.field.clone()),
        map_nodata: map.nodata,
        ignore: opts.ignore.as_ref().map(|s| s.to_string()),
        sample: sample_accuracy(&m.confusion),
        area: area_adjusted(&m.confusion, &m.mapped_pixels),
        classes: m.classes,
        confusion: m.confusion,
        mapped_pixels: m.mapped_pixels,
        pixel: map.grid.pixel_area(),
        dropped,
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

    #[test]
    fn no_samples_says_where_they_went() {
        let e = AssessError::NoSamples {
            references: vec!["a.gpkg".into(), "b.gpkg".into()],
            map: "m.tif".into(),
            dropped: Dropped {
                outside_map: 3,
                map_nodata: 2,
                reference_nodata: 1,
                ignored: 4,
            },
        };
        assert_eq!(
            e.to_string(),
            "no reference sample of a.gpkg, b.gpkg falls on a mapped pixel of --map m.tif (3 outside \
             the map, 2 on map nodata, 1 without a reference class, 4 ignored): check that both \
             cover the same area"
        );
    }

    #[test]
    fn causes_are_kept_as_sources() {
        use std::error::Error;
        let e = AssessError::Read {
            input: Input::Reference,
            path: "r.tif".into(),
            source: ReadFailure::Open(OpenError::Missing),
        };
        assert_eq!(
            e.to_string(),
            "cannot read --reference r.tif (no such file): check that the file is complete \
             (gdalinfo -checksum)"
        );
        assert_eq!(e.source().unwrap().to_string(), "no such file");
        let e = AssessError::Layer {
            path: "p.gpkg".into(),
            source: LayerError::NoLayers,
        };
        assert_eq!(e.to_string(), "--reference p.gpkg has no layers");
        assert!(e.source().unwrap().is::<LayerError>());
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
