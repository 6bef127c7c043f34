//! Reference points: the class of each point, read from a vector layer in any CRS, against the map
//! pixel under it.

use std::collections::BTreeMap;

use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::vector::{Feature, Geometry, Layer, LayerAccess, OGRwkbGeometryType};
use gdal::Dataset;
use treesits_gdal::error::GdalCause;
use treesits_gdal::srs::gis_order;
use treesits_gdal::vector;

use crate::grid::RasterGrid;
use crate::tally::{open_raster, read_window, PixelRules, Tally};
use crate::{AssessError, AssessOptions, Dropped, Input, MapInfo};

/// Reads the class of every point of a vector and looks up the map under it.
pub(crate) fn compare_points(
    path: &str,
    ds: &Dataset,
    opts: &AssessOptions,
    map: &MapInfo,
    labels: &BTreeMap<u8, String>,
    ignored: &[bool; 256],
) -> Result<Tally, AssessError> {
    let mut layer = vector::choose_layer(ds, opts.layer.as_deref()).map_err(|source| AssessError::Layer {
        path: path.to_string(),
        source,
    })?;
    let field = ClassField::find(&layer, path, &opts.field)?;
    let to_map = transform_to_map(&layer, path, map)?;
    let classes = ClassLookup::new(labels);
    let mut points = read_points(&mut layer, path, &field, &classes)?;
    reproject(&mut points, &to_map, path)?;
    let rules = PixelRules {
        map_nodata: map.nodata,
        // A point whose class is the map's nodata code has no reference class.
        ref_nodata: Some(map.nodata),
        ignored,
    };
    sample_map(&opts.map, &map.grid, points, &rules)
}

/// A point in the map's CRS (once reprojected) and its reference class.
struct Sample {
    x: f64,
    y: f64,
    code: Option<u8>,
}

/// The attribute that holds each point's class (matched without regard to case).
struct ClassField {
    index: usize,
    name: String,
}

impl ClassField {
    fn find(layer: &Layer, path: &str, wanted: &str) -> Result<ClassField, AssessError> {
        let fields: Vec<String> = layer.defn().fields().map(|f| f.name()).collect();
        match fields.iter().position(|f| f.eq_ignore_ascii_case(wanted)) {
            Some(index) => Ok(ClassField {
                index,
                name: fields[index].clone(),
            }),
            None => Err(AssessError::NoSuchField {
                path: path.to_string(),
                layer: layer.name(),
                field: wanted.to_string(),
                available: if fields.is_empty() {
                    "none".into()
                } else {
                    fields.join(", ")
                },
            }),
        }
    }
}

/// The transformation from the layer's CRS to the map's.
fn transform_to_map(layer: &Layer, path: &str, map: &MapInfo) -> Result<CoordTransform, AssessError> {
    // A GeoPackage without CRS reports GDAL's placeholders ("Undefined geographic SRS", srs_id 0,
    // or "Undefined cartesian SRS", -1): coordinates in them mean nothing.
    let srs = layer
        .spatial_ref()
        .filter(|s| !s.name().is_some_and(|n| n.starts_with("Undefined ")))
        .ok_or_else(|| AssessError::ReferenceNoCrs {
            path: path.to_string(),
            layer: layer.name(),
        })?;
    let map_srs: SpatialRef = map.grid.srs.clone().expect("the map has a CRS");
    CoordTransform::new(&gis_order(srs), &gis_order(map_srs)).map_err(|e| AssessError::Reproject {
        path: path.to_string(),
        source: GdalCause::new(e),
    })
}

/// Class codes by code or by name.
struct ClassLookup<'a> {
    labels: &'a BTreeMap<u8, String>,
    by_name: BTreeMap<String, u8>,
}

impl ClassLookup<'_> {
    fn new(labels: &BTreeMap<u8, String>) -> ClassLookup<'_> {
        ClassLookup {
            labels,
            by_name: labels.iter().map(|(c, n)| (n.to_lowercase(), *c)).collect(),
        }
    }

    /// The code `value` stands for: a whole number 0-255, or a class name.
    fn code(&self, value: &str) -> Option<u8> {
        let numeric = value
            .parse::<f64>()
            .ok()
            .filter(|x| x.fract() == 0.0 && (0.0..=255.0).contains(x))
            .map(|x| x as u8);
        numeric.or_else(|| self.by_name.get(&value.to_lowercase()).copied())
    }

    /// The classes a value may name, for a message.
    fn known(&self) -> String {
        let v: Vec<String> = self.labels.iter().map(|(c, n)| format!("{c} = {n}")).collect();
        if v.is_empty() {
            "the map carries no class names".into()
        } else {
            v.join(", ")
        }
    }
}

/// Every point of the layer (the parts of multipoints each) with its class, in the layer's CRS.
fn read_points(
    layer: &mut Layer,
    path: &str,
    field: &ClassField,
    classes: &ClassLookup,
) -> Result<Vec<Sample>, AssessError> {
    let mut points = Vec::new();
    for feature in layer.features() {
        let fid = feature.fid().unwrap_or(0);
        let Some(g) = feature.geometry() else { continue };
        if g.is_empty() {
            continue;
        }
        let positions = point_positions(g).ok_or_else(|| AssessError::NotPoint {
            path: path.to_string(),
            fid,
            kind: g.geometry_name(),
        })?;
        let code = point_class(&feature, fid, path, field, classes)?;
        points.extend(positions.into_iter().map(|(x, y)| Sample { x, y, code }));
    }
    Ok(points)
}

/// The coordinates of a point or of each part of a multipoint; `None` for other geometries.
fn point_positions(g: &Geometry) -> Option<Vec<(f64, f64)>> {
    match gdal::vector::geometry_type_flatten(g.geometry_type()) {
        OGRwkbGeometryType::wkbPoint => {
            let (x, y, _) = g.get_point(0);
            Some(vec![(x, y)])
        }
        OGRwkbGeometryType::wkbMultiPoint => Some(
            (0..g.geometry_count())
                .map(|i| {
                    let (x, y, _) = g.get_geometry(i).get_point(0);
                    (x, y)
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The class of a feature; `None` when its field is empty.
fn point_class(
    feature: &Feature,
    fid: u64,
    path: &str,
    field: &ClassField,
    classes: &ClassLookup,
) -> Result<Option<u8>, AssessError> {
    let value = feature
        .field_as_string(field.index)
        .map_err(|e| AssessError::ReadFeature {
            path: path.to_string(),
            fid,
            source: GdalCause::new(e),
        })?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let Some(value) = value else { return Ok(None) };
    match classes.code(&value) {
        Some(code) => Ok(Some(code)),
        None => Err(AssessError::UnknownClass {
            path: path.to_string(),
            fid,
            field: field.name.clone(),
            value,
            known: classes.known(),
        }),
    }
}

/// Moves the points into the map's CRS, all in one call.
fn reproject(points: &mut [Sample], to_map: &CoordTransform, path: &str) -> Result<(), AssessError> {
    if points.is_empty() {
        return Ok(());
    }
    let mut xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    let mut ys: Vec<f64> = points.iter().map(|p| p.y).collect();
    let mut zs = vec![0.0; xs.len()];
    to_map
        .transform_coords(&mut xs, &mut ys, &mut zs)
        .map_err(|e| AssessError::Reproject {
            path: path.to_string(),
            source: GdalCause::new(e),
        })?;
    for (p, (x, y)) in points.iter_mut().zip(xs.into_iter().zip(ys)) {
        p.x = x;
        p.y = y;
    }
    Ok(())
}

/// The map pixel (row, col) under each point that lies on the map, in row order; counts the others.
fn pixels_on_map(
    grid: &RasterGrid,
    points: Vec<Sample>,
    dropped: &mut Dropped,
) -> Vec<(usize, usize, Option<u8>)> {
    let gt = grid.gt;
    let (cols, rows) = grid.size;
    let mut pixels = Vec::with_capacity(points.len());
    for Sample { x, y, code } in points {
        let c = ((x - gt[0]) / gt[1]).floor();
        let r = ((y - gt[3]) / gt[5]).floor();
        if !(c >= 0.0 && r >= 0.0 && c < cols as f64 && r < rows as f64) {
            dropped.outside_map += 1;
            continue;
        }
        pixels.push((r as usize, c as usize, code));
    }
    pixels.sort_unstable_by_key(|p| (p.0, p.1));
    pixels
}

/// Pairs each point's class with the map's class under it.
fn sample_map(
    map_path: &str,
    grid: &RasterGrid,
    points: Vec<Sample>,
    rules: &PixelRules,
) -> Result<Tally, AssessError> {
    let mut t = Tally::new();
    // In row order, so GDAL's block cache serves neighbours.
    let pixels = pixels_on_map(grid, points, &mut t.dropped);
    let mds = open_raster(Input::Map, map_path)?;
    for (r, c, code) in pixels {
        let mc = read_window(&mds, Input::Map, map_path, (c, r), (1, 1))?[0];
        match code {
            None => t.dropped.reference_nodata += 1,
            Some(rc) => rules.count(&mut t, mc, rc),
        }
    }
    Ok(t)
}
