//! Areas of interest: polygons from any OGR vector, reprojected onto the cube, turned into the list of
//! FORCE tiles they cover and one Byte mask per tile.
//!
//! The pixel rule: a pixel is selected when its **centre** lies inside a polygon (GDAL's rasteriser
//! rule), or, with `all_touched`, when the polygon touches the pixel at all. Tiles are the exact
//! intersection of the polygons with the grid: a tile is listed only when its mask holds a 1.
//!
//! Masks are rasterised in parallel, one tile per task. GDAL objects never cross threads: the
//! polygons travel as WKB and every worker parses them and opens the mask rasters once.

use std::path::{Path, PathBuf};

use gdal::raster::{rasterize, RasterizeOptions};
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, OGRwkbGeometryType};
use gdal::{Dataset, DatasetOptions, DriverManager, GdalOpenFlags, Metadata};
use rayon::prelude::*;
use treesits_core::grid::{Extent, TileGrid, TileId};
use treesits_core::tiles_csv::{tiles_csv, TileListRow};
use treesits_core::value_set::ValueSet;

use crate::geotiff::{GeoTiffSpec, TiffLayout};
use crate::staged_dir::StagedDir;
use crate::value_mask::{MaskRaster, OpenMaskRaster};

/// Why an AOI could not be selected. Every message names the input and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AoiError {
    #[error(
        "cannot open --aoi {path} as a vector ({reason}): give a GeoPackage, Shapefile, GeoJSON or \
         FlatGeobuf file that OGR can read"
    )]
    Unreadable { path: String, reason: String },
    #[error("--aoi {path} has no layer named '{layer}': its layers are {available}")]
    NoSuchLayer {
        path: String,
        layer: String,
        available: String,
    },
    #[error("--aoi {path} has {count} layers ({available}): choose one with --layer")]
    AmbiguousLayer {
        path: String,
        count: usize,
        available: String,
    },
    #[error("--aoi {path} has no layers")]
    NoLayers { path: String },
    #[error("--where \"{filter}\" is not a valid OGR SQL attribute filter for --aoi {path}: {reason}")]
    BadFilter {
        path: String,
        filter: String,
        reason: String,
    },
    #[error("--where \"{filter}\" selects no features of layer '{layer}' in --aoi {path}: check the field names and values")]
    FilterSelectsNothing {
        path: String,
        layer: String,
        filter: String,
    },
    #[error(
        "layer '{layer}' of --aoi {path} has no polygon features: give polygons (or choose another --layer)"
    )]
    EmptyLayer { path: String, layer: String },
    #[error("feature {fid} of --aoi {path} is a {kind}: aoi-select needs polygons or multipolygons")]
    NotPolygon { path: String, fid: u64, kind: String },
    #[error("layer '{layer}' of --aoi {path} has no coordinate reference system: assign one (ogr2ogr -a_srs EPSG:…)")]
    NoCrs { path: String, layer: String },
    #[error("cannot reproject --aoi {path} onto the cube's CRS: {reason}")]
    Reproject { path: String, reason: String },
    #[error(
        "--aoi {path} lies outside the cube {cube}: none of the {candidates} tiles it covers has a \
         tile directory there; check that the AOI and the cube cover the same region"
    )]
    OutsideCube {
        path: String,
        cube: String,
        candidates: usize,
    },
    #[error("cannot list the tile directories of the cube {cube}: {reason}")]
    CubeListing { cube: String, reason: String },
    #[error(
        "--mask {path} does not overlap the AOI (its extent, reprojected onto the cube, misses the AOI's): \
         drop it or check its CRS"
    )]
    MaskOutside { path: String },
    #[error("cannot use --mask {path}: {reason}")]
    MaskUnreadable { path: String, reason: String },
    #[error("writing {what}: {reason}")]
    Write { what: String, reason: String },
}

fn gdal_reason(e: gdal::errors::GdalError) -> String {
    e.to_string()
}

/// A spatial reference whose coordinates are (x, y) = (east, north) / (lon, lat), whatever its axis order.
pub(crate) fn gis_order(mut srs: SpatialRef) -> SpatialRef {
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    srs
}

/// Where the polygons come from.
#[derive(Debug, Clone)]
pub struct AoiSource {
    /// What GDAL opens (a local path or `/vsis3/…`).
    pub path: String,
    /// The layer; `None` takes the only layer.
    pub layer: Option<String>,
    /// An OGR SQL attribute filter (`name = 'Auwald'`).
    pub filter: Option<String>,
}

/// One polygon of the AOI in the cube's CRS, as WKB (so it can cross threads), with its envelope.
#[derive(Debug, Clone)]
pub struct AoiPolygon {
    pub wkb: Vec<u8>,
    pub envelope: Extent,
}

/// The AOI in the cube's CRS.
#[derive(Debug, Clone)]
pub struct Aoi {
    pub source: AoiSource,
    /// Features read (after `--where`).
    pub features: usize,
    pub polygons: Vec<AoiPolygon>,
    /// The envelope of all polygons.
    pub extent: Extent,
}

fn envelope_of(g: &Geometry) -> Extent {
    let e = g.envelope();
    Extent {
        xmin: e.MinX,
        ymin: e.MinY,
        xmax: e.MaxX,
        ymax: e.MaxY,
    }
}

fn union(a: Extent, b: Extent) -> Extent {
    Extent {
        xmin: a.xmin.min(b.xmin),
        ymin: a.ymin.min(b.ymin),
        xmax: a.xmax.max(b.xmax),
        ymax: a.ymax.max(b.ymax),
    }
}

/// Pushes the polygons of `g` (a polygon, multipolygon or collection of them) onto `out`; returns the
/// name of the first non-polygon part found, if any.
fn push_polygons(g: &Geometry, out: &mut Vec<Geometry>) -> Option<String> {
    let ty = gdal::vector::geometry_type_flatten(g.geometry_type());
    match ty {
        OGRwkbGeometryType::wkbPolygon => {
            out.push(g.clone());
            None
        }
        OGRwkbGeometryType::wkbMultiPolygon | OGRwkbGeometryType::wkbGeometryCollection => {
            for i in 0..g.geometry_count() {
                if let Some(bad) = push_polygons(&g.get_geometry(i), out) {
                    return Some(bad);
                }
            }
            None
        }
        _ => Some(g.geometry_name()),
    }
}

impl Aoi {
    /// Reads the polygons and reprojects them onto the cube's CRS (`cube_wkt`).
    pub fn load(source: &AoiSource, cube_wkt: &str) -> Result<Aoi, AoiError> {
        let path = &source.path;
        let ds = Dataset::open_ex(
            path,
            DatasetOptions {
                open_flags: GdalOpenFlags::GDAL_OF_VECTOR | GdalOpenFlags::GDAL_OF_READONLY,
                ..Default::default()
            },
        )
        .map_err(|_| AoiError::Unreadable {
            path: path.clone(),
            reason: if !path.starts_with("/vsi") && !Path::new(path).exists() {
                "no such file".into()
            } else {
                crate::vsi_text::take_last_gdal_error()
                    .unwrap_or_else(|| "not a vector format OGR recognises".into())
            },
        })?;
        let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
        let available = || names.join(", ");
        let mut layer = match &source.layer {
            Some(name) => ds.layer_by_name(name).map_err(|_| AoiError::NoSuchLayer {
                path: path.clone(),
                layer: name.clone(),
                available: available(),
            })?,
            None => match names.len() {
                0 => return Err(AoiError::NoLayers { path: path.clone() }),
                1 => ds.layer(0).map_err(|e| AoiError::Unreadable {
                    path: path.clone(),
                    reason: gdal_reason(e),
                })?,
                count => {
                    return Err(AoiError::AmbiguousLayer {
                        path: path.clone(),
                        count,
                        available: available(),
                    })
                }
            },
        };
        let layer_name = layer.name();
        if let Some(filter) = &source.filter {
            layer
                .set_attribute_filter(filter)
                .map_err(|e| AoiError::BadFilter {
                    path: path.clone(),
                    filter: filter.clone(),
                    reason: gdal_reason(e),
                })?;
        }
        let srs = layer.spatial_ref().ok_or_else(|| AoiError::NoCrs {
            path: path.clone(),
            layer: layer_name.clone(),
        })?;
        let reproject = |e: gdal::errors::GdalError| AoiError::Reproject {
            path: path.clone(),
            reason: gdal_reason(e),
        };
        let cube_srs = gis_order(SpatialRef::from_wkt(cube_wkt).map_err(reproject)?);
        let to_cube =
            gdal::spatial_ref::CoordTransform::new(&gis_order(srs), &cube_srs).map_err(reproject)?;

        // Drivers that hand the filter to a database (GeoPackage: SQLite) report a bad one only
        // while reading; the error is what tells "invalid filter" from "selects nothing".
        crate::vsi_text::take_last_gdal_error();
        let mut features = 0;
        let mut polygons = Vec::new();
        let mut extent: Option<Extent> = None;
        for feature in layer.features() {
            features += 1;
            let Some(g) = feature.geometry() else { continue };
            if g.is_empty() {
                continue;
            }
            let mut parts = Vec::new();
            if let Some(kind) = push_polygons(g, &mut parts) {
                return Err(AoiError::NotPolygon {
                    path: path.clone(),
                    fid: feature.fid().unwrap_or(0),
                    kind,
                });
            }
            for part in parts {
                let mut p = part.transform(&to_cube).map_err(reproject)?;
                p.flatten_to_2d();
                let envelope = envelope_of(&p);
                if !(envelope.xmin.is_finite() && envelope.ymax.is_finite()) {
                    continue;
                }
                extent = Some(extent.map_or(envelope, |e| union(e, envelope)));
                let wkb = p.wkb().map_err(reproject)?;
                polygons.push(AoiPolygon { wkb, envelope });
            }
        }
        if features == 0 {
            if let Some(reason) = crate::vsi_text::take_last_gdal_error() {
                return Err(match &source.filter {
                    Some(filter) => AoiError::BadFilter {
                        path: path.clone(),
                        filter: filter.clone(),
                        reason,
                    },
                    None => AoiError::Unreadable {
                        path: path.clone(),
                        reason,
                    },
                });
            }
        }
        let Some(extent) = extent else {
            return Err(match (&source.filter, features) {
                (Some(filter), 0) => AoiError::FilterSelectsNothing {
                    path: path.clone(),
                    layer: layer_name,
                    filter: filter.clone(),
                },
                _ => AoiError::EmptyLayer {
                    path: path.clone(),
                    layer: layer_name,
                },
            });
        };
        Ok(Aoi {
            source: source.clone(),
            features,
            polygons,
            extent,
        })
    }
}

/// What to select and where to write it.
#[derive(Debug, Clone)]
pub struct SelectionPlan {
    /// The cube root as GDAL reads it (local path or `/vsis3/…`), for listing tile directories.
    pub cube: String,
    pub grid: TileGrid,
    pub aoi: Aoi,
    /// Mask rasters (GDAL paths) and the values that mean "process"; empty: no value mask.
    pub masks: Vec<String>,
    pub mask_values: ValueSet,
    pub all_touched: bool,
    /// Keep only tiles whose directory exists in the cube.
    pub existing_only: bool,
    /// The output directory (local).
    pub out_dir: PathBuf,
}

/// What a selection did.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The listed tiles, sorted by id.
    pub rows: Vec<TileListRow>,
    /// Tiles of the AOI's bounding box that were looked at.
    pub candidates: usize,
    /// Tiles the polygons reach whose mask came out empty (not listed).
    pub empty: usize,
    /// Selected pixels over all tiles.
    pub pixels: u64,
}

/// The file name of a tile's mask.
pub fn mask_file_name(tile: TileId) -> String {
    format!("{tile}.mask.tif")
}

/// The tile directories (`Xdddd_Ydddd`) present in a cube root.
pub fn cube_tiles(cube: &str) -> Result<Vec<TileId>, AoiError> {
    let entries = gdal::vsi::read_dir(cube, false).map_err(|e| AoiError::CubeListing {
        cube: cube.to_string(),
        reason: gdal_reason(e),
    })?;
    let mut tiles: Vec<TileId> = entries
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.trim_end_matches('/').parse().ok())
        .collect();
    tiles.sort();
    tiles.dedup();
    Ok(tiles)
}

/// Per-worker GDAL state: the polygons parsed from WKB and the mask rasters opened.
struct Worker {
    polygons: Vec<(Geometry, Extent)>,
    masks: Vec<OpenMaskRaster>,
}

/// The outcome of one tile: its mask, or nothing when no pixel was selected.
enum TileOutcome {
    Untouched,
    Empty,
    Selected(TileListRow),
}

/// Selects the tiles and writes `tiles.csv` and the masks into `plan.out_dir`, atomically: on error
/// nothing is left there.
pub fn select(plan: &SelectionPlan) -> Result<Selection, AoiError> {
    let def = &plan.grid.definition;
    let mut candidates = def.tiles_overlapping(&plan.aoi.extent);
    let present = cube_tiles(&plan.cube)?;
    let any_present = candidates.iter().any(|t| present.binary_search(t).is_ok());
    if !any_present {
        return Err(AoiError::OutsideCube {
            path: plan.aoi.source.path.clone(),
            cube: plan.cube.clone(),
            candidates: candidates.len(),
        });
    }
    if plan.existing_only {
        candidates.retain(|t| present.binary_search(t).is_ok());
    }
    let masks: Vec<MaskRaster> = plan
        .masks
        .iter()
        .map(|m| MaskRaster::inspect(m, &def.projection_wkt, &plan.aoi.extent))
        .collect::<Result<_, _>>()?;

    let staged = StagedDir::new(&plan.out_dir).map_err(|e| AoiError::Write {
        what: plan.out_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let dir = staged.path().to_path_buf();
    let outcomes: Vec<TileOutcome> = candidates
        .par_iter()
        .map_init(
            || Worker::new(plan, &masks),
            |worker, &tile| match worker {
                Ok(w) => w.tile(plan, tile, &dir),
                Err(e) => Err(AoiError::MaskUnreadable {
                    path: e.0.clone(),
                    reason: e.1.clone(),
                }),
            },
        )
        .collect::<Result<_, _>>()?;

    let mut rows = Vec::new();
    let mut empty = 0;
    for o in outcomes {
        match o {
            TileOutcome::Untouched => {}
            TileOutcome::Empty => empty += 1,
            TileOutcome::Selected(row) => rows.push(row),
        }
    }
    rows.sort_by_key(|r| r.tile_id);
    let pixels = rows.iter().map(|r| r.pixels).sum();
    let csv = dir.join("tiles.csv");
    std::fs::write(&csv, tiles_csv(&rows)).map_err(|e| AoiError::Write {
        what: csv.display().to_string(),
        reason: e.to_string(),
    })?;
    // Masks of an earlier run into the same directory must not outlive its tiles.csv.
    let stale = |n: &str| n == "tiles.csv" || (n.ends_with(".mask.tif") && n.starts_with('X'));
    staged
        .commit_with(stale, "tiles.csv")
        .map_err(|e| AoiError::Write {
            what: plan.out_dir.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(Selection {
        rows,
        candidates: candidates.len(),
        empty,
        pixels,
    })
}

impl Worker {
    /// Parses the polygons and opens the mask rasters; a failure is (path, reason).
    fn new(plan: &SelectionPlan, masks: &[MaskRaster]) -> Result<Worker, (String, String)> {
        let polygons = plan
            .aoi
            .polygons
            .iter()
            .map(|p| {
                Geometry::from_wkb(&p.wkb)
                    .map(|g| (g, p.envelope))
                    .map_err(|e| (plan.aoi.source.path.clone(), gdal_reason(e)))
            })
            .collect::<Result<_, _>>()?;
        let masks = masks
            .iter()
            .map(|m| m.open(&plan.grid.definition.projection_wkt))
            .collect::<Result<_, _>>()?;
        Ok(Worker { polygons, masks })
    }

    fn tile(&mut self, plan: &SelectionPlan, tile: TileId, dir: &Path) -> Result<TileOutcome, AoiError> {
        let grid = &plan.grid;
        let extent = grid.definition.tile_extent(tile);
        let write_err = |what: &str, e: gdal::errors::GdalError| AoiError::Write {
            what: format!("{what} of tile {tile}"),
            reason: gdal_reason(e),
        };
        // Clip each polygon to the tile first: rasterising then costs the tile's share of a detailed
        // boundary, not the whole country's.
        let rect = Geometry::bbox(extent.xmin, extent.ymin, extent.xmax, extent.ymax)
            .map_err(|e| write_err("tile rectangle", e))?;
        let mut parts: Vec<Geometry> = Vec::new();
        for (g, env) in &self.polygons {
            if env.intersection(&extent).is_none() {
                continue;
            }
            if !g.intersects(&rect) {
                continue;
            }
            match g.intersection(&rect) {
                Some(clipped) => {
                    // A polygon that only touches the tile leaves lines or points: they select nothing.
                    push_polygons_lenient(&clipped, &mut parts);
                }
                // GEOS refuses some invalid polygons; GDAL's rasteriser does not mind them.
                None => parts.push(g.clone()),
            }
        }
        if parts.is_empty() {
            return Ok(TileOutcome::Untouched);
        }
        let (cols, rows) = grid.tile_pixels;
        let mem = DriverManager::get_driver_by_name("MEM").map_err(|e| write_err("memory raster", e))?;
        let mut ds = mem
            .create_with_band_type::<u8, _>("", cols, rows, 1)
            .map_err(|e| write_err("memory raster", e))?;
        ds.set_geo_transform(&grid.geotransform(tile))
            .map_err(|e| write_err("memory raster", e))?;
        let burn = vec![1.0; parts.len()];
        let options = RasterizeOptions {
            all_touched: plan.all_touched,
            ..Default::default()
        };
        rasterize(&mut ds, &[1], &parts, &burn, Some(options)).map_err(|e| write_err("rasterising", e))?;
        let mut mask = ds
            .rasterband(1)
            .and_then(|b| b.read_as::<u8>((0, 0), (cols, rows), (cols, rows), None))
            .map_err(|e| write_err("reading the rasterised mask", e))?
            .into_shape_and_vec()
            .1;
        drop(ds);
        if !self.masks.is_empty() {
            crate::value_mask::apply(&self.masks, &plan.mask_values, grid, tile, &mut mask)
                .map_err(|(path, reason)| AoiError::MaskUnreadable { path, reason })?;
        }
        let pixels = mask.iter().filter(|&&v| v == 1).count() as u64;
        if pixels == 0 {
            return Ok(TileOutcome::Empty);
        }
        let name = mask_file_name(tile);
        let path = dir.join(&name);
        let layout = TiffLayout::Strips {
            rows: grid.block_rows,
        };
        let spec = GeoTiffSpec::tile(grid, tile, 1, layout);
        let out = spec.create::<u8>(&path).map_err(|e| write_err(&name, e))?;
        {
            let mut band = out.rasterband(1).map_err(|e| write_err(&name, e))?;
            let mut buf = gdal::raster::Buffer::new((cols, rows), mask);
            band.write((0, 0), (cols, rows), &mut buf)
                .map_err(|e| write_err(&name, e))?;
            band.set_description("1 = process, 0 = skip")
                .map_err(|e| write_err(&name, e))?;
        }
        // Closing flushes the compressed strips; a failure there is a failed write.
        out.close().map_err(|e| write_err(&name, e))?;
        Ok(TileOutcome::Selected(TileListRow {
            tile_id: tile,
            extent,
            pixels,
            mask: name,
        }))
    }
}

/// Like [`push_polygons`], but skips lines and points instead of stopping at them.
fn push_polygons_lenient(g: &Geometry, out: &mut Vec<Geometry>) {
    let ty = gdal::vector::geometry_type_flatten(g.geometry_type());
    match ty {
        OGRwkbGeometryType::wkbPolygon if !g.is_empty() => out.push(g.clone()),
        OGRwkbGeometryType::wkbMultiPolygon | OGRwkbGeometryType::wkbGeometryCollection => {
            for i in 0..g.geometry_count() {
                push_polygons_lenient(&g.get_geometry(i), out);
            }
        }
        _ => {}
    }
}
