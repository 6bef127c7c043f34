//! The STAC Item of a mosaic run (`mosaic.stac.json`), so catalogues can index the maps: the mapped
//! tiles' footprint in EPSG:4326, the acquisitions' date range, one asset per mosaic file (size,
//! SHA-256, bands, classes, grid), and the model as a STAC MLM (machine-learning-model) description
//! with an asset naming the ONNX file by its checksum. Documented in `docs/formats.md` ("Map
//! products", *STAC Item*).
//!
//! Extensions, by the versions whose specifications this follows: file v2.1.0, raster v1.1.0,
//! classification v1.1.0, projection v1.1.0, mlm v1.4.0 (only when the predictions carry the
//! model's contract).

use std::path::{Path, PathBuf};

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::Geometry;
use gdal::{Dataset, Metadata};
use serde_json::{json, Map, Value};
use treesits_core::contract::{ModelContract, OutputKind};
use treesits_core::inventory::sha256_reader;
use treesits_core::names::STAC_ITEM_FILE;
use treesits_core::species::SpeciesClass;
use treesits_core::{TileGrid, TileId};

use crate::provenance::{Provenance, VERSION};

/// STAC version of the Item.
pub const STAC_VERSION: &str = "1.0.0";
pub const FILE_EXTENSION: &str = "https://stac-extensions.github.io/file/v2.1.0/schema.json";
pub const RASTER_EXTENSION: &str = "https://stac-extensions.github.io/raster/v1.1.0/schema.json";
pub const CLASSIFICATION_EXTENSION: &str =
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json";
pub const PROJECTION_EXTENSION: &str = "https://stac-extensions.github.io/projection/v1.1.0/schema.json";
pub const MLM_EXTENSION: &str = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json";
/// Media type of a Cloud-Optimised GeoTIFF.
pub const COG_MEDIA_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";
/// Multihash prefix of a SHA-256 digest (code 0x12, 32 bytes) in `file:checksum`.
const SHA256_MULTIHASH: &str = "1220";
/// Points added along each tile edge before reprojecting, so the footprint follows the curves a
/// straight edge of the cube's CRS makes in longitude/latitude.
const EDGE_POINTS: usize = 8;

/// Why the STAC Item could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StacError {
    #[error("STAC item: reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("STAC item: {what}: {source}")]
    Gdal {
        what: String,
        source: gdal::errors::GdalError,
    },
    #[error("STAC item: the tiles' footprint could not be made (union of the tile polygons failed)")]
    Footprint,
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn gdal_err(what: impl Into<String>) -> impl FnOnce(gdal::errors::GdalError) -> StacError {
    let what = what.into();
    move |source| StacError::Gdal { what, source }
}

/// What the Item describes: the mapped tiles on their grid, their provenance, the class table.
#[derive(Debug, Clone, Copy)]
pub struct ItemInput<'a> {
    pub grid: &'a TileGrid,
    pub tiles: &'a [TileId],
    pub classes: &'a [SpeciesClass],
    pub provenance: &'a Provenance,
}

/// Writes `mosaic.stac.json` into `dir`, describing the mosaic files already there.
pub fn write_item(dir: &Path, input: &ItemInput) -> Result<PathBuf, StacError> {
    let item = item(dir, input)?;
    let path = dir.join(STAC_ITEM_FILE);
    let text = serde_json::to_string_pretty(&item).expect("JSON values serialise") + "\n";
    std::fs::write(&path, text).map_err(|source| StacError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The Item as JSON.
pub fn item(dir: &Path, input: &ItemInput) -> Result<Value, StacError> {
    let p = input.provenance;
    let (geometry, bbox) = footprint(input.grid, input.tiles)?;
    let mut extensions = vec![
        FILE_EXTENSION,
        RASTER_EXTENSION,
        CLASSIFICATION_EXTENSION,
        PROJECTION_EXTENSION,
    ];
    let mut properties = Map::new();
    properties.insert("datetime".into(), Value::Null);
    properties.insert(
        "start_datetime".into(),
        json!(format!("{}T00:00:00Z", p.date_start)),
    );
    properties.insert("end_datetime".into(), json!(format!("{}T23:59:59Z", p.date_end)));
    properties.insert("created".into(), json!(treesits_core::inventory::now_rfc3339()));
    properties.insert(
        "description".into(),
        json!("tree species map made by treesits (FORCE cube, ONNX model)"),
    );
    let mut instruments: Vec<&str> = p.sensors.iter().map(|s| instrument(s.name())).collect();
    instruments.dedup();
    properties.insert("instruments".into(), json!(instruments));
    properties.insert("treesits:version".into(), json!(VERSION));
    properties.insert(
        "treesits:sensors".into(),
        json!(p.sensors.iter().map(|s| s.name()).collect::<Vec<_>>()),
    );
    properties.insert("treesits:qai_screen".into(), json!(p.qai_screens.join(";")));
    properties.insert("treesits:model_id".into(), json!(p.model_ids.join(";")));
    if !p.model_sha256.is_empty() {
        properties.insert("treesits:model_sha256".into(), json!(p.model_sha256.join(";")));
    }
    properties.insert("treesits:tiles".into(), json!(input.tiles.len()));

    let mut assets = Map::new();
    for name in mosaic_files(dir)? {
        let asset = file_asset(dir, &name, input.classes)?;
        if name == "mosaic_class.tif" {
            // The Item's grid: the mosaic on the cube's own grid.
            for key in ["proj:epsg", "proj:projjson", "proj:shape", "proj:transform"] {
                if let Some(v) = asset.get(key) {
                    properties.insert(key.into(), v.clone());
                }
            }
        }
        assets.insert(name, asset);
    }
    if let Some(contract) = &p.model_contract {
        extensions.push(MLM_EXTENSION);
        for (k, v) in mlm_properties(contract) {
            properties.insert(k, v);
        }
        assets.insert("model".into(), model_asset(p, contract));
    }
    Ok(json!({
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": item_id(input),
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "links": [],
        "assets": assets,
    }))
}

/// `treesits-<model>-<first date>-<last date>-<8 hex digits of the tile list>`: the same map made
/// again gets the same id.
fn item_id(input: &ItemInput) -> String {
    let p = input.provenance;
    let tiles: Vec<String> = input.tiles.iter().map(TileId::to_string).collect();
    let digest = treesits_core::inventory::sha256_hex(tiles.join(",").as_bytes());
    let model: String = p.model_ids[0]
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "treesits-{model}-{}-{}-{}",
        p.date_start,
        p.date_end,
        &digest[..8]
    )
}

/// The STAC common-metadata instrument of a FORCE sensor.
fn instrument(sensor: &str) -> &'static str {
    match sensor {
        "SEN2A" | "SEN2B" | "SEN2C" | "SEN2D" => "msi",
        "LND04" | "LND05" => "tm",
        "LND07" => "etm+",
        _ => "oli",
    }
}

/// The mosaic files in `dir` that the Item lists as assets, sorted: every `mosaic_*` file and the
/// quicklook.
fn mosaic_files(dir: &Path) -> Result<Vec<String>, StacError> {
    let read = |source| StacError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(read)? {
        let e = e.map_err(read)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with("mosaic_") || name == "quicklook.png") && e.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// (media type, roles) of a mosaic file, by its name.
fn kind(name: &str) -> (&'static str, Vec<&'static str>) {
    if name.ends_with(".aux.xml") {
        ("application/xml", vec!["metadata"])
    } else if name.ends_with(".tif") {
        (COG_MEDIA_TYPE, vec!["data"])
    } else if name.ends_with(".vrt") {
        ("application/xml", vec!["data", "virtual"])
    } else if name.ends_with(".png") {
        ("image/png", vec!["overview", "visual"])
    } else if name.ends_with(".sld") {
        ("application/vnd.ogc.sld+xml", vec!["style", "metadata"])
    } else if name.ends_with(".qml") {
        ("application/xml", vec!["style", "metadata"])
    } else {
        ("application/octet-stream", vec!["metadata"])
    }
}

/// An asset for one file: href, type, roles, size and checksum; for rasters their bands and grid,
/// for class rasters the classes.
fn file_asset(dir: &Path, name: &str, classes: &[SpeciesClass]) -> Result<Value, StacError> {
    let path = dir.join(name);
    let read = |source| StacError::Read {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(read)?.len();
    let sha = std::fs::File::open(&path).and_then(sha256_reader).map_err(read)?;
    let (media, roles) = kind(name);
    let mut a = Map::new();
    a.insert("href".into(), json!(format!("./{name}")));
    a.insert("type".into(), json!(media));
    a.insert("roles".into(), json!(roles));
    a.insert("file:size".into(), json!(size));
    a.insert("file:checksum".into(), json!(format!("{SHA256_MULTIHASH}{sha}")));
    if name.ends_with(".tif") || name.ends_with(".vrt") {
        raster_fields(&path, name, &mut a)?;
        if name.starts_with("mosaic_class") {
            a.insert("classification:classes".into(), class_objects(classes));
        }
    }
    Ok(Value::Object(a))
}

/// `raster:bands` (type, nodata, scale/offset where set, unit where set) and the `proj:` grid.
fn raster_fields(path: &Path, name: &str, a: &mut Map<String, Value>) -> Result<(), StacError> {
    let ds = Dataset::open(path).map_err(gdal_err(format!("opening {name}")))?;
    let mut bands = Vec::new();
    for b in 1..=ds.raster_count() {
        let band = ds
            .rasterband(b)
            .map_err(gdal_err(format!("band {b} of {name}")))?;
        let mut o = Map::new();
        o.insert(
            "data_type".into(),
            json!(raster_data_type(&band.band_type().name())),
        );
        if let Some(nodata) = band.no_data_value() {
            o.insert("nodata".into(), json!(nodata));
        }
        if let Some(scale) = band.scale().filter(|s| *s != 1.0) {
            o.insert("scale".into(), json!(scale));
        }
        if let Some(offset) = band.offset().filter(|o| *o != 0.0) {
            o.insert("offset".into(), json!(offset));
        }
        let unit = band.unit();
        if !unit.is_empty() {
            o.insert("unit".into(), json!(unit));
        }
        let description = band.description().unwrap_or_default();
        if !description.is_empty() {
            // Not a raster-extension field, but allowed, and MLM refers to bands by name.
            o.insert("name".into(), json!(description));
        }
        bands.push(Value::Object(o));
    }
    a.insert("raster:bands".into(), Value::Array(bands));
    let (w, h) = ds.raster_size();
    a.insert("proj:shape".into(), json!([h, w]));
    let gt = ds
        .geo_transform()
        .map_err(gdal_err(format!("geotransform of {name}")))?;
    a.insert(
        "proj:transform".into(),
        json!([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3], 0.0, 0.0, 1.0]),
    );
    let epsg = ds.spatial_ref().ok().and_then(|mut srs| {
        srs.auto_identify_epsg().ok()?;
        srs.auth_code().ok()
    });
    a.insert("proj:epsg".into(), json!(epsg));
    if epsg.is_none() {
        // FORCE's LAEA grids have no EPSG code: the CRS itself, as PROJJSON.
        if let Some(v) = ds
            .spatial_ref()
            .ok()
            .and_then(|srs| srs.to_projjson().ok())
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        {
            a.insert("proj:projjson".into(), v);
        }
    }
    Ok(())
}

/// The raster extension's name of a GDAL data type (`Byte` → `uint8`, `UInt16` → `uint16`).
fn raster_data_type(gdal: &str) -> &'static str {
    match gdal {
        "Byte" => "uint8",
        "Int8" => "int8",
        "UInt16" => "uint16",
        "Int16" => "int16",
        "UInt32" => "uint32",
        "Int32" => "int32",
        "UInt64" => "uint64",
        "Int64" => "int64",
        "Float32" => "float32",
        "Float64" => "float64",
        "CInt16" => "cint16",
        "CInt32" => "cint32",
        "CFloat32" => "cfloat32",
        "CFloat64" => "cfloat64",
        _ => "other",
    }
}

/// Classification-extension class objects: code, a machine-readable name, the name as given, colour.
fn class_objects(classes: &[SpeciesClass]) -> Value {
    Value::Array(
        classes
            .iter()
            .map(|c| {
                let [r, g, b] = c.colour;
                json!({
                    "value": c.code,
                    "name": slug(&c.name),
                    "description": c.name,
                    "color_hint": format!("{r:02X}{g:02X}{b:02X}"),
                })
            })
            .collect(),
    )
}

/// `Douglas fir` → `douglas-fir`: letters, digits, `-` and `_` only.
fn slug(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "class".into()
    } else {
        s
    }
}

/// The model as STAC MLM fields of the Item's properties.
fn mlm_properties(c: &ModelContract) -> Vec<(String, Value)> {
    let time = c.sequence.max_length.map_or(-1, |n| n as i64);
    let scaling: Value = if c.scaling.mean.is_empty() {
        Value::Null
    } else {
        Value::Array(
            c.scaling
                .mean
                .iter()
                .zip(&c.scaling.std)
                .map(|(m, s)| json!({"type": "z-score", "mean": m, "stddev": s}))
                .collect(),
        )
    };
    let mut inputs = vec![json!({
        "name": c.inputs.values,
        "bands": c.bands,
        "input": {
            "shape": [-1, time, c.bands.len()],
            "dim_order": ["batch", "time", "channel"],
            "data_type": "float32",
        },
        "description": format!(
            "each pixel's clear observations in date order, {} padded, values scaled as raw x {} + {} \
             before the z-score",
            serde_json::to_value(c.sequence.padding).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            c.scaling.scale,
            c.scaling.offset
        ),
        "value_scaling": scaling,
        "resize_type": Value::Null,
    })];
    if let Some(doy) = &c.inputs.doy {
        inputs.push(json!({
            "name": doy,
            "bands": [],
            "input": {"shape": [-1, time], "dim_order": ["batch", "time"], "data_type": "int64"},
            "description": "day of year of each observation (1-366, 0 where padded)",
        }));
    }
    if let Some(mask) = &c.inputs.mask {
        inputs.push(json!({
            "name": mask,
            "bands": [],
            "input": {"shape": [-1, time], "dim_order": ["batch", "time"], "data_type": "bool"},
            "description": "true where an observation is, false where padded",
        }));
    }
    let output = json!({
        "name": c.output.name,
        "tasks": ["classification"],
        "result": {
            "shape": [-1, c.classes.len()],
            "dim_order": ["batch", "class"],
            "data_type": "float32",
        },
        "description": match c.output.kind {
            OutputKind::Probabilities => "class probabilities in class-table order",
            OutputKind::Logits => "class logits in class-table order (predict applies softmax)",
        },
        "classification:classes": class_objects(&c.classes),
    });
    vec![
        ("mlm:name".into(), json!(c.model_id)),
        ("mlm:architecture".into(), json!(architecture(c))),
        ("mlm:tasks".into(), json!(["classification"])),
        ("mlm:framework".into(), json!("ONNX")),
        ("mlm:input".into(), Value::Array(inputs)),
        ("mlm:output".into(), json!([output])),
    ]
}

/// The contract has no architecture field: the description's words before any parenthesis (its
/// details), or `unknown`.
fn architecture(c: &ModelContract) -> String {
    let head = c.description.split('(').next().unwrap_or("").trim();
    if head.is_empty() {
        "unknown".into()
    } else {
        head.to_string()
    }
}

/// The ONNX file predict ran, named by its file name (it is not copied beside the maps) and its
/// SHA-256.
fn model_asset(p: &Provenance, c: &ModelContract) -> Value {
    let mut a = Map::new();
    let file = p
        .model_file
        .clone()
        .unwrap_or_else(|| format!("{}.onnx", c.model_id));
    a.insert("href".into(), json!(file));
    a.insert("title".into(), json!(format!("ONNX model {}", c.model_id)));
    a.insert("type".into(), json!("application/octet-stream; framework=onnx"));
    a.insert("roles".into(), json!(["mlm:model", "model"]));
    a.insert("mlm:artifact_type".into(), json!("onnx"));
    if let [sha] = p.model_sha256.as_slice() {
        a.insert("file:checksum".into(), json!(format!("{SHA256_MULTIHASH}{sha}")));
    }
    Value::Object(a)
}

/// The union of the tiles' squares, reprojected to EPSG:4326 (longitude, latitude), as GeoJSON, and
/// its bounding box `[west, south, east, north]`.
fn footprint(grid: &TileGrid, tiles: &[TileId]) -> Result<(Value, [f64; 4]), StacError> {
    let mut parts = Vec::with_capacity(tiles.len());
    for &t in tiles {
        let e = grid.definition.tile_extent(t);
        let corners = [
            (e.xmin, e.ymin),
            (e.xmax, e.ymin),
            (e.xmax, e.ymax),
            (e.xmin, e.ymax),
        ];
        let mut ring = Vec::new();
        for i in 0..4 {
            let (a, b) = (corners[i], corners[(i + 1) % 4]);
            for k in 0..EDGE_POINTS {
                let f = k as f64 / EDGE_POINTS as f64;
                ring.push(format!("{} {}", a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f));
            }
        }
        ring.push(ring[0].clone());
        let poly = Geometry::from_wkt(&format!("POLYGON(({}))", ring.join(",")))
            .map_err(gdal_err(format!("the polygon of tile {t}")))?;
        parts.push(poly);
    }
    // Pairwise, so each union joins pieces of similar size (thousands of tiles stay quick).
    while parts.len() > 1 {
        let mut next = Vec::with_capacity(parts.len().div_ceil(2));
        let mut it = parts.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => a.union(&b).ok_or(StacError::Footprint)?,
                None => a,
            });
        }
        parts = next;
    }
    let union = parts.pop().ok_or(StacError::Footprint)?;
    let mut src =
        SpatialRef::from_wkt(&grid.definition.projection_wkt).map_err(gdal_err("the grid's CRS"))?;
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut wgs84 = SpatialRef::from_epsg(4326).map_err(gdal_err("EPSG:4326"))?;
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&src, &wgs84).map_err(gdal_err("the transformation to EPSG:4326"))?;
    let geo = union
        .transform(&ct)
        .map_err(gdal_err("reprojecting the footprint"))?;
    let env = geo.envelope();
    let json = geo.json().map_err(gdal_err("the footprint as GeoJSON"))?;
    let value: Value = serde_json::from_str(&json).map_err(|_| StacError::Footprint)?;
    Ok((value, [env.MinX, env.MinY, env.MaxX, env.MaxY]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_become_machine_readable() {
        assert_eq!(slug("Douglas fir"), "douglas-fir");
        assert_eq!(slug("other_broadleaf"), "other_broadleaf");
        let c = class_objects(&treesits_core::species::tree_species()[..1]);
        assert_eq!(
            c,
            json!([{"value": 0, "name": "spruce", "description": "spruce", "color_hint": "1F5E31"}])
        );
    }

    #[test]
    fn gdal_types_get_the_raster_extension_names() {
        assert_eq!(raster_data_type("Byte"), "uint8");
        assert_eq!(raster_data_type("UInt16"), "uint16");
        assert_eq!(raster_data_type("CFloat64"), "cfloat64");
        assert_eq!(raster_data_type("Unknown"), "other");
    }

    #[test]
    fn instruments_follow_the_sensor() {
        assert_eq!(instrument("SEN2B"), "msi");
        assert_eq!(instrument("LND08"), "oli");
        assert_eq!(instrument("LND07"), "etm+");
    }
}
