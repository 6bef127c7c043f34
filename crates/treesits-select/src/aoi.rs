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
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, OGRwkbGeometryType};
use gdal::{DriverManager, GdalOpenFlags, Metadata};
use rayon::prelude::*;
use treesits_core::grid::{Extent, TileGrid, TileId};
use treesits_core::tiles_csv::{tiles_csv, TileListRow};
use treesits_core::value_set::ValueSet;

use treesits_core::names::{is_mask_file_name, mask_file_name, TILES_CSV};
use treesits_core::staged_dir::StagedDir;
use treesits_gdal::error::{clear_last_error, take_last_error, GdalCause, GdalMessage};
use treesits_gdal::listing::{cube_tiles, ListError};
use treesits_gdal::srs::gis_order;
use treesits_gdal::vector::{self, LayerError, OpenError};
use treesits_gdal::{GeoTiffSpec, TiffLayout};

use crate::value_mask::{MaskError, MaskRaster, OpenMaskRaster};

/// Why an AOI could not be selected. Every message names the input (by the flag it came from,
/// [`AoiSource::arg`]) and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AoiError {
    #[error(
        "cannot open {arg} {path} as a vector ({source}): give a GeoPackage, Shapefile, GeoJSON or \
         FlatGeobuf file that OGR can read"
    )]
    Unreadable {
        arg: &'static str,
        path: String,
        source: OpenError,
    },
    #[error("cannot read {arg} {path}: {source}")]
    UnreadableFeatures {
        arg: &'static str,
        path: String,
        source: GdalMessage,
    },
    #[error("{arg} {path} {source}")]
    Layer {
        arg: &'static str,
        path: String,
        source: LayerError,
    },
    #[error("--where \"{filter}\" is not a valid OGR SQL attribute filter for {arg} {path}: {source}")]
    BadFilter {
        arg: &'static str,
        path: String,
        filter: String,
        source: GdalMessage,
    },
    #[error("--where \"{filter}\" selects no features of layer '{layer}' in {arg} {path}: check the field names and values")]
    FilterSelectsNothing {
        arg: &'static str,
        path: String,
        layer: String,
        filter: String,
    },
    #[error(
        "layer '{layer}' of {arg} {path} has no polygon features: give polygons (or choose another layer)"
    )]
    EmptyLayer {
        arg: &'static str,
        path: String,
        layer: String,
    },
    #[error("feature {fid} of {arg} {path} is a {kind}: areas of interest are polygons or multipolygons")]
    NotPolygon {
        arg: &'static str,
        path: String,
        fid: u64,
        kind: String,
    },
    #[error("layer '{layer}' of {arg} {path} has no coordinate reference system: assign one (ogr2ogr -a_srs EPSG:…)")]
    NoCrs {
        arg: &'static str,
        path: String,
        layer: String,
    },
    #[error(
        "feature {fid} of {arg} {path} has coordinates that do not fit its CRS {crs} (they cannot be \
         reprojected onto the cube's): check the CRS the file declares (its .prj, or assign the right \
         one with ogr2ogr -a_srs EPSG:…)"
    )]
    OutsideCrs {
        arg: &'static str,
        path: String,
        fid: u64,
        crs: String,
    },
    #[error(
        "{arg} {path} has coordinates within ±180, ±90 ({extent}), longitude/latitude degrees by the look, \
         but declares the projected CRS {crs} (metres): check the CRS the file declares (its .prj, or \
         assign the right one with ogr2ogr -a_srs EPSG:4326)"
    )]
    DegreesInProjected {
        arg: &'static str,
        path: String,
        extent: String,
        crs: String,
    },
    #[error(
        "{arg} {path} has coordinates beyond any place on Earth in its CRS {crs} ({extent}): check the \
         CRS the file declares (its .prj, or assign the right one with ogr2ogr -a_srs EPSG:…) and its \
         coordinates"
    )]
    BeyondEarth {
        arg: &'static str,
        path: String,
        extent: String,
        crs: String,
    },
    #[error("cannot reproject {arg} {path} onto the cube's CRS: {source}")]
    Reproject {
        arg: &'static str,
        path: String,
        source: GdalCause,
    },
    #[error(
        "{arg} {path} lies outside the cube {cube}: none of the {candidates} tiles it covers has a \
         tile directory there; check that the AOI and the cube cover the same region"
    )]
    OutsideCube {
        arg: &'static str,
        path: String,
        cube: String,
        candidates: usize,
    },
    #[error("cannot list the tile directories of the cube: {0}")]
    CubeListing(#[from] ListError),
    #[error("cannot use --mask {0}")]
    Mask(#[from] MaskError),
    #[error("cannot rasterise the mask of tile {tile}: {source}")]
    Rasterise { tile: TileId, source: GdalCause },
    #[error("writing {path}: {source}")]
    WriteRaster { path: PathBuf, source: GdalCause },
    #[error("writing {path}: {source}")]
    WriteFile { path: PathBuf, source: std::io::Error },
}

/// Where the polygons come from.
#[derive(Debug, Clone)]
pub struct AoiSource {
    /// The flag the polygons were given with (`--aoi`, `--clip`), for messages.
    pub arg: &'static str,
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
        let (arg, path) = (source.arg, &source.path);
        // The open error is GDAL's own (an S3 403, a timeout, an unknown format): it is kept whole.
        let ds = vector::open(
            path,
            GdalOpenFlags::GDAL_OF_VECTOR,
            "not a vector format OGR recognises",
        )
        .map_err(|source| AoiError::Unreadable {
            arg,
            path: path.clone(),
            source,
        })?;
        let mut layer =
            vector::choose_layer(&ds, source.layer.as_deref()).map_err(|source| AoiError::Layer {
                arg,
                path: path.clone(),
                source,
            })?;
        let layer_name = layer.name();
        if let Some(filter) = &source.filter {
            layer
                .set_attribute_filter(filter)
                .map_err(|e| AoiError::BadFilter {
                    arg,
                    path: path.clone(),
                    filter: filter.clone(),
                    source: GdalMessage(GdalCause::new(e).to_string()),
                })?;
        }
        let srs = layer.spatial_ref().ok_or_else(|| AoiError::NoCrs {
            arg,
            path: path.clone(),
            layer: layer_name.clone(),
        })?;
        let reproject = |e: gdal::errors::GdalError| AoiError::Reproject {
            arg,
            path: path.clone(),
            source: GdalCause::new(e),
        };
        let crs = match (srs.name(), srs.auth_name(), srs.auth_code()) {
            (name, Some(auth), Ok(code)) => format!("{} ({auth}:{code})", name.unwrap_or_default())
                .trim_start()
                .to_string(),
            (Some(name), ..) => name,
            _ => "(unnamed)".to_string(),
        };
        // Degrees in a file that declares metres select nothing (or a few pixels at the CRS's
        // origin) instead of failing; no real AOI in a projected CRS lies within 180 m of its origin.
        if srs.is_projected() {
            if let Ok(e) = layer.get_extent() {
                let extent = format!("x {}..{}, y {}..{}", e.MinX, e.MaxX, e.MinY, e.MaxY);
                if e.MinX >= -180.0 && e.MaxX <= 180.0 && e.MinY >= -90.0 && e.MaxY <= 90.0 {
                    return Err(AoiError::DegreesInProjected {
                        arg,
                        path: path.clone(),
                        extent,
                        crs,
                    });
                }
                // Further from the origin than the Earth's circumference: no projection maps a
                // place there (a CRS where PROJ would wrap such coordinates silently).
                let limit = 4.1e7 / srs.linear_units().max(1e-9);
                if [e.MinX, e.MaxX, e.MinY, e.MaxY]
                    .iter()
                    .any(|v| !v.is_finite() || v.abs() > limit)
                {
                    return Err(AoiError::BeyondEarth {
                        arg,
                        path: path.clone(),
                        extent,
                        crs,
                    });
                }
            }
        }
        let cube_srs = gis_order(SpatialRef::from_wkt(cube_wkt).map_err(reproject)?);
        let to_cube = CoordTransform::new(&gis_order(srs), &cube_srs).map_err(reproject)?;

        let (features, polygons, extent) = read_polygons(source, &mut layer, &to_cube, &crs)?;
        let Some(extent) = extent else {
            return Err(no_polygons(source, layer_name, features));
        };
        Ok(Aoi {
            source: source.clone(),
            features,
            polygons,
            extent,
        })
    }
}

/// The polygons of the layer's features in the cube's CRS: (features read, polygons, their
/// envelope; `None` when there is no polygon).
fn read_polygons(
    source: &AoiSource,
    layer: &mut gdal::vector::Layer,
    to_cube: &CoordTransform,
    crs: &str,
) -> Result<(usize, Vec<AoiPolygon>, Option<Extent>), AoiError> {
    let (arg, path) = (source.arg, &source.path);
    let reproject = |e: gdal::errors::GdalError| AoiError::Reproject {
        arg,
        path: path.clone(),
        source: GdalCause::new(e),
    };
    // Drivers that hand the filter to a database (GeoPackage: SQLite) report a bad one only
    // while reading; the error is what tells "invalid filter" from "selects nothing".
    clear_last_error();
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
                arg,
                path: path.clone(),
                fid: feature.fid().unwrap_or(0),
                kind,
            });
        }
        for part in parts {
            // PROJ fails a point it cannot project (latitudes past 90°, metres given as degrees).
            let mut p = part.transform(to_cube).map_err(|_| AoiError::OutsideCrs {
                arg,
                path: path.clone(),
                fid: feature.fid().unwrap_or(0),
                crs: crs.to_string(),
            })?;
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
        if let Some(reason) = take_last_error() {
            return Err(match &source.filter {
                Some(filter) => AoiError::BadFilter {
                    arg,
                    path: path.clone(),
                    filter: filter.clone(),
                    source: GdalMessage(reason),
                },
                None => AoiError::UnreadableFeatures {
                    arg,
                    path: path.clone(),
                    source: GdalMessage(reason),
                },
            });
        }
    }
    Ok((features, polygons, extent))
}

/// Why a layer gave no polygon: a filter that selects nothing, or a layer without polygons.
fn no_polygons(source: &AoiSource, layer: String, features: usize) -> AoiError {
    let (arg, path) = (source.arg, source.path.clone());
    match (&source.filter, features) {
        (Some(filter), 0) => AoiError::FilterSelectsNothing {
            arg,
            path,
            layer,
            filter: filter.clone(),
        },
        _ => AoiError::EmptyLayer { arg, path, layer },
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
            arg: plan.aoi.source.arg,
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

    let staged = StagedDir::new(&plan.out_dir).map_err(|source| AoiError::WriteFile {
        path: plan.out_dir.clone(),
        source,
    })?;
    let dir = staged.path().to_path_buf();
    let outcomes: Vec<TileOutcome> = candidates
        .par_iter()
        .map_init(
            || None,
            |slot: &mut Option<Worker>, &tile| {
                // Opened on a worker's first tile; a failure fails that tile (and so the selection).
                let worker = match slot {
                    Some(w) => w,
                    None => slot.insert(Worker::new(plan, &masks)?),
                };
                worker.tile(plan, tile, &dir)
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
    let csv = dir.join(TILES_CSV);
    std::fs::write(&csv, tiles_csv(&rows)).map_err(|source| AoiError::WriteFile { path: csv, source })?;
    // Masks of an earlier run into the same directory must not outlive its tiles.csv.
    let stale = |n: &str| n == TILES_CSV || is_mask_file_name(n);
    staged
        .commit_with(stale, TILES_CSV)
        .map_err(|source| AoiError::WriteFile {
            path: plan.out_dir.clone(),
            source,
        })?;
    Ok(Selection {
        rows,
        candidates: candidates.len(),
        empty,
        pixels,
    })
}

impl Worker {
    /// Parses the polygons and opens the mask rasters.
    fn new(plan: &SelectionPlan, masks: &[MaskRaster]) -> Result<Worker, AoiError> {
        let polygons = plan
            .aoi
            .polygons
            .iter()
            .map(|p| {
                Geometry::from_wkb(&p.wkb)
                    .map(|g| (g, p.envelope))
                    .map_err(|e| AoiError::Reproject {
                        arg: plan.aoi.source.arg,
                        path: plan.aoi.source.path.clone(),
                        source: GdalCause::new(e),
                    })
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
        let rasterise = |e: gdal::errors::GdalError| AoiError::Rasterise {
            tile,
            source: GdalCause::new(e),
        };
        // Clip each polygon to the tile first: rasterising then costs the tile's share of a detailed
        // boundary, not the whole country's.
        let rect = Geometry::bbox(extent.xmin, extent.ymin, extent.xmax, extent.ymax).map_err(rasterise)?;
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
        let mem = DriverManager::get_driver_by_name("MEM").map_err(rasterise)?;
        let mut ds = mem
            .create_with_band_type::<u8, _>("", cols, rows, 1)
            .map_err(rasterise)?;
        ds.set_geo_transform(&grid.geotransform(tile))
            .map_err(rasterise)?;
        let burn = vec![1.0; parts.len()];
        let options = RasterizeOptions {
            all_touched: plan.all_touched,
            ..Default::default()
        };
        rasterize(&mut ds, &[1], &parts, &burn, Some(options)).map_err(rasterise)?;
        let mut mask = ds
            .rasterband(1)
            .and_then(|b| b.read_as::<u8>((0, 0), (cols, rows), (cols, rows), None))
            .map_err(rasterise)?
            .into_shape_and_vec()
            .1;
        drop(ds);
        if !self.masks.is_empty() {
            crate::value_mask::apply(&self.masks, &plan.mask_values, grid, tile, &mut mask)?;
        }
        let pixels = mask.iter().filter(|&&v| v == 1).count() as u64;
        if pixels == 0 {
            return Ok(TileOutcome::Empty);
        }
        let name = mask_file_name(tile);
        let path = dir.join(&name);
        let write_err = |e: gdal::errors::GdalError| AoiError::WriteRaster {
            path: path.clone(),
            source: GdalCause::new(e),
        };
        let layout = TiffLayout::Strips {
            rows: grid.block_rows,
        };
        let spec = GeoTiffSpec::tile(grid, tile, 1, layout);
        // Closing flushes the compressed strips; a failure there is a failed write, which GDAL 3.6
        // reports only to its error handler (`checked_write` makes it the error).
        treesits_gdal::error::checked_write(|| {
            let out = spec.create::<u8>(&path)?;
            {
                let mut band = out.rasterband(1)?;
                let mut buf = gdal::raster::Buffer::new((cols, rows), mask);
                band.write((0, 0), (cols, rows), &mut buf)?;
                band.set_description("1 = process, 0 = skip")?;
            }
            out.close()
        })
        .map_err(write_err)?;
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
