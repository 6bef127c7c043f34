//! Writing a synthetic cube to disk.

use std::path::{Path, PathBuf};

use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{Dataset, DriverManager, Metadata};
use rayon::prelude::*;
use treesits_core::grid::PrjForm;
use treesits_core::level2::{BOA_NODATA, BOA_SCALE, QAI_NODATA};
use treesits_core::species::{truth_classes, SpeciesClass, CLASS_NODATA};
use treesits_core::staged_dir::StagedDir;
use treesits_core::{CubeDefinition, Extent, Level2Name, Product, Sensor, TileGrid, TileId};
use treesits_gdal::error::WriteCheck;
use treesits_gdal::{ForceLayout, GeoTiffSpec, TiffLayout};

use crate::scene::{Acquisition, Scene};
use crate::LAEA_WKT;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Output directory (must not exist, or be empty; see `force`).
    pub out: PathBuf,
    pub seed: u64,
    /// Number of tiles, laid out in a near-square block.
    pub tiles: usize,
    /// Tile width and height in pixels.
    pub tile_pixels: usize,
    /// Acquisitions over the year.
    pub dates: usize,
    pub year: i32,
    pub sensors: Vec<Sensor>,
    pub layout: ForceLayout,
    pub prj_form: PrjForm,
    /// Pixel size in metres.
    pub resolution: f64,
    /// Replace an existing output directory written by this generator.
    pub force: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            out: PathBuf::from("synth"),
            seed: 42,
            tiles: 2,
            tile_pixels: 200,
            dates: 24,
            year: 2021,
            sensors: vec![Sensor::Sen2a, Sensor::Sen2b],
            layout: ForceLayout::Force38,
            prj_form: PrjForm::Tagged,
            resolution: 10.0,
            force: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{0}")]
    Config(String),
    #[error("output directory {} is not empty and was not written by treesits-synth; choose another --out", .0.display())]
    NotOurs(PathBuf),
    #[error("output directory {} exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing {}: {message}; nothing was written to --out (free space and run again)", path.display())]
    WriteFailed { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Gdal {
        what: String,
        source: gdal::errors::GdalError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn gd(what: impl Into<String>) -> impl FnOnce(gdal::errors::GdalError) -> SynthError {
    let what = what.into();
    move |source| SynthError::Gdal { what, source }
}

/// Runs one GDAL call that writes `path` (a block write, a flush, a close) and fails at the first
/// failure GDAL reported under `check` since the check started: GDAL 3.6 reports a block it could not
/// write (disk full) only to its error handler.
fn written(
    check: &WriteCheck,
    path: &Path,
    call: impl FnOnce() -> gdal::errors::Result<()>,
) -> Result<(), SynthError> {
    call().map_err(gd(format!("writing {}", path.display())))?;
    match check.first_failure() {
        None => Ok(()),
        Some(m) => Err(SynthError::WriteFailed {
            path: path.to_path_buf(),
            message: m.to_string(),
        }),
    }
}

/// `manifest.json`: what was generated, for users and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Manifest {
    pub generator: &'static str,
    pub format_version: u32,
    pub seed: u64,
    pub year: i32,
    pub resolution: f64,
    pub tile_pixels: usize,
    pub block_rows: usize,
    pub layout: String,
    pub prj_form: PrjForm,
    pub cube_definition: CubeDefinition,
    pub tiles: Vec<ManifestTile>,
    pub acquisitions: Vec<Acquisition>,
    pub band_names: Vec<String>,
    pub boa_scale: f64,
    pub boa_nodata: i16,
    pub qai_nodata: i16,
    pub classes: Vec<SpeciesClass>,
    pub class_nodata: u8,
    pub landcover: Vec<String>,
    pub landcover_tree_value: u8,
    pub aoi: AoiManifest,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestTile {
    pub tile_id: TileId,
    pub extent: Extent,
    pub truth: String,
    /// Pixels per class code, 0–10.
    pub class_counts: Vec<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AoiManifest {
    pub file: String,
    pub file_laea: String,
    pub layer: String,
    pub features: Vec<AoiFeature>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AoiFeature {
    pub id: i32,
    pub name: String,
    pub kind: String,
    /// The polygon(s) in cube coordinates as WKT (edges densified every 10 pixels).
    pub wkt_laea: String,
}

/// The grid origin of the German FORCE cube (EPSG:3035).
pub const GERMAN_ORIGIN_GEO: (f64, f64) = (-25.0, 60.0);
pub const GERMAN_ORIGIN_MAP: (f64, f64) = (2_456_026.25, 4_574_919.5);
/// A forest region in Bavaria (EPSG:3035) where the first synthetic tile lies.
const ANCHOR: (f64, f64) = (4_420_000.0, 2_860_000.0);
/// WorldCover's value for tree cover, and the other values it uses here.
pub const WORLDCOVER_TREES: u8 = 10;
const WORLDCOVER_OTHER: [u8; 3] = [30, 40, 50];

impl SynthConfig {
    fn check(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if self.tiles == 0 || self.tiles > 400 {
            return bad(format!("--tiles must be 1..=400, got {}", self.tiles));
        }
        if !(16..=10_000).contains(&self.tile_pixels) {
            return bad(format!(
                "--size must be 16..=10000 pixels, got {}",
                self.tile_pixels
            ));
        }
        if self.dates == 0 || self.dates > 1000 {
            return bad(format!("--dates must be 1..=1000, got {}", self.dates));
        }
        if self.sensors.is_empty() {
            return bad("--sensors must name at least one sensor".into());
        }
        if self.resolution.is_nan() || self.resolution <= 0.0 {
            return bad(format!("--resolution must be positive, got {}", self.resolution));
        }
        // FORCE names tiles Xdddd_Ydddd: small tiles far from the origin would need more digits,
        // which no FORCE tool (nor cube-extract) accepts.
        let ids = self.tile_ids();
        if let Some(t) = ids
            .iter()
            .find(|t| !(0..=9999).contains(&t.x) || !(0..=9999).contains(&t.y))
        {
            return bad(format!(
                "--size {} at --resolution {} gives tiles of {} m, numbered like X{:04}_Y{:04}: not a FORCE \
                 tile id (Xdddd_Ydddd, four digits each); use a larger --size or --resolution",
                self.tile_pixels,
                self.resolution,
                self.tile_pixels as f64 * self.resolution,
                t.x,
                t.y
            ));
        }
        Ok(())
    }

    /// The cube definition: German origin, tile size scaled to the pixel size used, blocks a tenth of a
    /// tile high (as 3000 m blocks in 30 km tiles).
    pub fn cube_definition(&self) -> CubeDefinition {
        let tile = self.tile_pixels as f64 * self.resolution;
        let block_rows = (self.tile_pixels / 10).max(1);
        CubeDefinition {
            projection_wkt: LAEA_WKT.to_string(),
            origin_geo: GERMAN_ORIGIN_GEO,
            origin_map: GERMAN_ORIGIN_MAP,
            tile_size: (tile, tile),
            block_size: (tile, block_rows as f64 * self.resolution),
        }
    }

    /// The tiles, row by row from the north-west.
    pub fn tile_ids(&self) -> Vec<TileId> {
        let def = self.cube_definition();
        let base = def.tile_of(ANCHOR.0, ANCHOR.1);
        let cols = (self.tiles as f64).sqrt().ceil() as usize;
        (0..self.tiles)
            .map(|i| TileId::new(base.x + (i % cols) as i32, base.y + (i / cols) as i32))
            .collect()
    }
}

/// Generates the whole data set. Writes into a temporary sibling directory and renames it into place,
/// so an interrupted run never leaves something that looks complete.
pub fn generate(cfg: &SynthConfig) -> Result<Manifest, SynthError> {
    generate_with(cfg, &|_| {})
}

/// Called after each acquisition (one date of one tile) is written, from the writing thread.
pub type OnAcquisition<'a> = &'a (dyn Fn(TileId) + Sync);

/// [`generate`], calling `on_acquisition` as each of the `tiles × dates` acquisitions is written
/// (progress for the command line).
pub fn generate_with(cfg: &SynthConfig, on_acquisition: OnAcquisition<'_>) -> Result<Manifest, SynthError> {
    cfg.check()?;
    let out = &cfg.out;
    if out.exists() {
        let empty = std::fs::read_dir(out).map_err(io(out))?.next().is_none();
        if !empty {
            if !out.join("manifest.json").exists() {
                return Err(SynthError::NotOurs(out.clone()));
            }
            if !cfg.force {
                return Err(SynthError::Exists(out.clone()));
            }
        }
    }
    let staged = StagedDir::new(out).map_err(io(out))?;
    let manifest = write_all(cfg, staged.path(), on_acquisition)?;
    // Everything of the earlier world goes; the new one replaces it in one step.
    staged.commit_with(|_| true, "").map_err(io(out))?;
    Ok(manifest)
}

fn write_all(
    cfg: &SynthConfig,
    dir: &Path,
    on_acquisition: OnAcquisition<'_>,
) -> Result<Manifest, SynthError> {
    let def = cfg.cube_definition();
    let grid = def
        .grid(cfg.resolution)
        .map_err(|e| SynthError::Config(e.to_string()))?;
    let scene = Scene::new(cfg.seed, cfg.year, cfg.dates, &cfg.sensors);
    let cube = dir.join("cube");
    std::fs::create_dir_all(&cube).map_err(io(&cube))?;
    let prj = cube.join("datacube-definition.prj");
    std::fs::write(&prj, def.to_prj(cfg.prj_form)).map_err(io(&prj))?;
    let truth_dir = dir.join("truth");
    std::fs::create_dir_all(&truth_dir).map_err(io(&truth_dir))?;

    let mut tiles = Vec::new();
    for tile in cfg.tile_ids() {
        log::debug!("tile {tile}: {} acquisitions", scene.acquisitions.len());
        let truth = tile_truth(&scene, &grid, tile);
        let truth_name = format!("{tile}_truth.tif");
        write_truth(&grid, tile, &truth, &truth_dir.join(&truth_name))?;
        let tile_dir = cube.join(tile.to_string());
        std::fs::create_dir_all(&tile_dir).map_err(io(&tile_dir))?;
        scene
            .acquisitions
            .par_iter()
            .map(|acq| {
                write_acquisition(cfg, &scene, &grid, tile, &truth, acq, &tile_dir)?;
                on_acquisition(tile);
                Ok(())
            })
            .collect::<Result<Vec<()>, SynthError>>()?;
        let mut class_counts = vec![0u64; 11];
        for c in &truth {
            class_counts[usize::from(*c)] += 1;
        }
        tiles.push(ManifestTile {
            tile_id: tile,
            extent: def.tile_extent(tile),
            truth: format!("truth/{truth_name}"),
            class_counts,
        });
    }

    let extent = union_extent(&tiles);
    let landcover = write_landcover(&scene, &grid, &extent, &dir.join("landcover"))?;
    let aoi = write_aoi(cfg, &extent, dir)?;

    let manifest = Manifest {
        generator: concat!("treesits-synth ", env!("CARGO_PKG_VERSION")),
        format_version: 1,
        seed: cfg.seed,
        year: cfg.year,
        resolution: cfg.resolution,
        tile_pixels: cfg.tile_pixels,
        block_rows: grid.block_rows,
        layout: cfg.layout.to_string(),
        prj_form: cfg.prj_form,
        cube_definition: def,
        tiles,
        acquisitions: scene.acquisitions.clone(),
        band_names: Sensor::Sen2a.bands().iter().map(|s| s.to_string()).collect(),
        boa_scale: BOA_SCALE,
        boa_nodata: BOA_NODATA,
        qai_nodata: QAI_NODATA,
        classes: truth_classes(),
        class_nodata: CLASS_NODATA,
        landcover,
        landcover_tree_value: WORLDCOVER_TREES,
        aoi,
    };
    let path = dir.join("manifest.json");
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&path, json + "\n").map_err(io(&path))?;
    Ok(manifest)
}

fn union_extent(tiles: &[ManifestTile]) -> Extent {
    tiles.iter().skip(1).fold(tiles[0].extent, |a, t| Extent {
        xmin: a.xmin.min(t.extent.xmin),
        ymin: a.ymin.min(t.extent.ymin),
        xmax: a.xmax.max(t.extent.xmax),
        ymax: a.ymax.max(t.extent.ymax),
    })
}

/// Global pixel index of a tile's first pixel.
fn tile_origin_px(grid: &TileGrid, tile: TileId) -> (i64, i64) {
    (
        i64::from(tile.x) * grid.tile_pixels.0 as i64,
        i64::from(tile.y) * grid.tile_pixels.1 as i64,
    )
}

/// The truth of one tile, row-major (a tile of bytes: 9 MB for 3000 × 3000).
pub fn tile_truth(scene: &Scene, grid: &TileGrid, tile: TileId) -> Vec<u8> {
    let (cols, rows) = grid.tile_pixels;
    let (gx0, gy0) = tile_origin_px(grid, tile);
    let mut truth = vec![0u8; cols * rows];
    truth.par_chunks_mut(cols).enumerate().for_each(|(row, line)| {
        for (col, v) in line.iter_mut().enumerate() {
            *v = scene.truth(gx0 + col as i64, gy0 + row as i64);
        }
    });
    truth
}

fn write_truth(grid: &TileGrid, tile: TileId, truth: &[u8], path: &Path) -> Result<(), SynthError> {
    let check = WriteCheck::start();
    write_truth_checked(&check, grid, tile, truth, path)?;
    written(&check, path, || Ok(()))
}

fn write_truth_checked(
    check: &WriteCheck,
    grid: &TileGrid,
    tile: TileId,
    truth: &[u8],
    path: &Path,
) -> Result<(), SynthError> {
    let (cols, rows) = grid.tile_pixels;
    let layout = TiffLayout::Strips {
        rows: grid.block_rows,
    };
    let spec = GeoTiffSpec::tile(grid, tile, 1, layout);
    let what = || format!("writing {}", path.display());
    let ds = spec.create::<u8>(path).map_err(gd(what()))?;
    let mut band = ds.rasterband(1).map_err(gd(what()))?;
    band.set_no_data_value(Some(f64::from(CLASS_NODATA)))
        .map_err(gd(what()))?;
    band.set_description("tree species (0-9), 10 = non-forest")
        .map_err(gd(what()))?;
    let names: Vec<String> = truth_classes().into_iter().map(|c| c.name).collect();
    band.set_metadata_item("CLASSES", &names.join(","), "")
        .map_err(gd(what()))?;
    let mut buf = Buffer::new((cols, rows), truth.to_vec());
    band.write((0, 0), (cols, rows), &mut buf).map_err(gd(what()))?;
    written(check, path, || ds.close())
}

#[allow(clippy::too_many_arguments)]
fn write_acquisition(
    cfg: &SynthConfig,
    scene: &Scene,
    grid: &TileGrid,
    tile: TileId,
    truth: &[u8],
    acq: &Acquisition,
    dir: &Path,
) -> Result<(), SynthError> {
    let check = WriteCheck::start();
    let (cols, rows) = grid.tile_pixels;
    let layout = cfg.layout.tiff_layout(grid.block_rows);
    let bands = acq.sensor.bands();
    let name = Level2Name::new(acq.date, acq.sensor, Product::Boa);
    let qai_name = name.with_product(Product::Qai);
    // A COG is written as a tiled GeoTIFF first (hidden, beside it) and then copied into its form.
    let staging = |n: &Level2Name| {
        if cfg.layout.is_cog() {
            dir.join(format!(".{n}.staging.tif"))
        } else {
            dir.join(n.to_string())
        }
    };
    let boa_path = staging(&name);
    let qai_path = staging(&qai_name);
    let spec = GeoTiffSpec::tile(grid, tile, bands.len(), layout);
    let what = |p: &Path| format!("writing {}", p.display());
    let mut boa = spec.create::<i16>(&boa_path).map_err(gd(what(&boa_path)))?;
    let mut qai = GeoTiffSpec {
        bands: 1,
        ..spec.clone()
    }
    .create::<i16>(&qai_path)
    .map_err(gd(what(&qai_path)))?;
    describe_boa(&mut boa, acq, bands).map_err(gd(what(&boa_path)))?;
    describe_qai(&mut qai, acq).map_err(gd(what(&qai_path)))?;

    // Stream in bands of rows that match the file's blocks: memory is one block row, never the tile.
    let step = layout.block_shape(cols).1.min(rows);
    let (gx0, gy0) = tile_origin_px(grid, tile);
    let mut boa_buf: Vec<Vec<i16>> = vec![vec![0; cols * step]; bands.len()];
    let mut qai_buf = vec![0i16; cols * step];
    for row0 in (0..rows).step_by(step) {
        let n = step.min(rows - row0);
        for r in 0..n {
            for c in 0..cols {
                let i = r * cols + c;
                let class = truth[(row0 + r) * cols + c];
                let o = scene.observe(acq, gx0 + c as i64, gy0 + (row0 + r) as i64, class);
                qai_buf[i] = o.qai;
                for (b, buf) in boa_buf.iter_mut().enumerate() {
                    buf[i] = o.boa[b];
                }
            }
        }
        for (b, buf) in boa_buf.iter().enumerate() {
            let mut band = boa.rasterband(b + 1).map_err(gd(what(&boa_path)))?;
            let mut data = Buffer::new((cols, n), buf[..cols * n].to_vec());
            band.write((0, row0 as isize), (cols, n), &mut data)
                .map_err(gd(what(&boa_path)))?;
        }
        let mut band = qai.rasterband(1).map_err(gd(what(&qai_path)))?;
        let mut data = Buffer::new((cols, n), qai_buf[..cols * n].to_vec());
        band.write((0, row0 as isize), (cols, n), &mut data)
            .map_err(gd(what(&qai_path)))?;
        // Written blocks would otherwise wait in GDAL's cache (5 % of RAM) until the file closes:
        // flushing each block row keeps memory at one block row per worker, whatever the tile size.
        // A failed write stops the file at its first failure (GDAL says it once, in the log).
        written(&check, &boa_path, || boa.flush_cache())?;
        written(&check, &qai_path, || qai.flush_cache())?;
    }
    if cfg.layout.is_cog() {
        for (src, n) in [(&boa, &name), (&qai, &qai_name)] {
            let path = dir.join(n.to_string());
            let cog = treesits_gdal::write_level2_cog(src, &path).map_err(gd(what(&path)))?;
            written(&check, &path, || cog.close())?;
        }
        drop((boa, qai));
        for p in [&boa_path, &qai_path] {
            std::fs::remove_file(p).map_err(io(p))?;
        }
        return Ok(());
    }
    written(&check, &boa_path, || boa.close())?;
    written(&check, &qai_path, || qai.close())
}

/// Band descriptions and metadata as FORCE writes them (band names as descriptions, a `FORCE`
/// metadata domain with date, sensor, wavelength and scale).
fn describe_boa(ds: &mut Dataset, acq: &Acquisition, bands: &[&str]) -> gdal::errors::Result<()> {
    describe_dataset(ds, acq, "BOA")?;
    let wavelengths = acq.sensor.wavelengths();
    for (i, name) in bands.iter().enumerate() {
        let mut band = ds.rasterband(i + 1)?;
        band.set_no_data_value(Some(f64::from(BOA_NODATA)))?;
        band.set_description(name)?;
        band.set_metadata_item("Domain", name, "FORCE")?;
        band.set_metadata_item("Wavelength", &format!("{:.3}", wavelengths[i]), "FORCE")?;
        band.set_metadata_item("Wavelength_unit", "micrometers", "FORCE")?;
        band.set_metadata_item("Scale", &format!("{BOA_SCALE:.3}"), "FORCE")?;
        band.set_metadata_item("Sensor", acq.sensor.name(), "FORCE")?;
        band.set_metadata_item("Date", &format!("{}T00:00:00.0Z", acq.date), "FORCE")?;
    }
    Ok(())
}

fn describe_qai(ds: &mut Dataset, acq: &Acquisition) -> gdal::errors::Result<()> {
    describe_dataset(ds, acq, "QAI")?;
    let mut band = ds.rasterband(1)?;
    band.set_no_data_value(Some(f64::from(QAI_NODATA)))?;
    band.set_description("Quality assurance information")?;
    band.set_metadata_item("Domain", "QAI", "FORCE")?;
    band.set_metadata_item("Sensor", acq.sensor.name(), "FORCE")?;
    band.set_metadata_item("Date", &format!("{}T00:00:00.0Z", acq.date), "FORCE")?;
    Ok(())
}

fn describe_dataset(ds: &mut Dataset, acq: &Acquisition, product: &str) -> gdal::errors::Result<()> {
    ds.set_metadata_item("FORCE_version", "treesits-synth", "FORCE")?;
    ds.set_metadata_item("Product", product, "FORCE")?;
    ds.set_metadata_item("Sensor", acq.sensor.name(), "FORCE")?;
    ds.set_metadata_item("Date", &acq.date.to_string(), "FORCE")?;
    Ok(())
}

fn wgs84() -> Result<SpatialRef, SynthError> {
    let mut s = SpatialRef::from_epsg(4326).map_err(gd("EPSG:4326"))?;
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(s)
}

fn laea() -> Result<SpatialRef, SynthError> {
    let mut s = SpatialRef::from_wkt(LAEA_WKT).map_err(gd("EPSG:3035"))?;
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(s)
}

/// A WorldCover-like land-cover map in EPSG:4326 (1/12000° pixels, about 10 m), in two files split at
/// a meridian as WorldCover comes in tiles: 10 where the truth is forest, 30/40/50 elsewhere.
fn write_landcover(
    scene: &Scene,
    grid: &TileGrid,
    extent: &Extent,
    dir: &Path,
) -> Result<Vec<String>, SynthError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let check = WriteCheck::start();
    let to_geo = CoordTransform::new(&laea()?, &wgs84()?).map_err(gd("LAEA → WGS84"))?;
    let to_map = CoordTransform::new(&wgs84()?, &laea()?).map_err(gd("WGS84 → LAEA"))?;
    let pad = 5.0 * grid.resolution;
    let b = to_geo
        .transform_bounds(
            &[
                extent.xmin - pad,
                extent.ymin - pad,
                extent.xmax + pad,
                extent.ymax + pad,
            ],
            21,
        )
        .map_err(gd("landcover bounds"))?;
    let res = 1.0 / 12_000.0;
    let (west, south, east, north) = (
        (b[0] / res).floor() * res,
        (b[1] / res).floor() * res,
        (b[2] / res).ceil() * res,
        (b[3] / res).ceil() * res,
    );
    let width = ((east - west) / res).round() as usize;
    let height = ((north - south) / res).round() as usize;
    let split = width / 2;
    let parts = [(0usize, split), (split, width - split)];
    let def = &grid.definition;
    let mut names = Vec::new();
    for (i, (col0, cols)) in parts.into_iter().enumerate() {
        let name = format!("worldcover_part{}.tif", i + 1);
        let path = dir.join(&name);
        let what = || format!("writing {}", path.display());
        let spec = GeoTiffSpec {
            cols,
            rows: height,
            bands: 1,
            layout: TiffLayout::Tiles { size: 256 },
            geotransform: [west + col0 as f64 * res, res, 0.0, north, 0.0, -res],
            projection_wkt: &wgs84()?.to_wkt().map_err(gd("WGS84 WKT"))?,
        };
        let ds = spec.create::<u8>(&path).map_err(gd(what()))?;
        let mut band = ds.rasterband(1).map_err(gd(what()))?;
        band.set_no_data_value(Some(0.0)).map_err(gd(what()))?;
        let mut data = vec![0u8; cols * height];
        for (row, line) in data.chunks_mut(cols).enumerate() {
            let lat = north - (row as f64 + 0.5) * res;
            let mut xs: Vec<f64> = (0..cols)
                .map(|c| west + (col0 + c) as f64 * res + res / 2.0)
                .collect();
            let mut ys = vec![lat; cols];
            let mut zs = vec![0.0; cols];
            to_map
                .transform_coords(&mut xs, &mut ys, &mut zs)
                .map_err(gd("landcover coordinates"))?;
            for (c, v) in line.iter_mut().enumerate() {
                let gx = ((xs[c] - def.origin_map.0) / grid.resolution).floor() as i64;
                let gy = ((def.origin_map.1 - ys[c]) / grid.resolution).floor() as i64;
                let class = scene.truth(gx, gy);
                *v = if class < treesits_core::species::NON_FOREST {
                    WORLDCOVER_TREES
                } else {
                    WORLDCOVER_OTHER
                        [(crate::noise::hash(scene.seed, 0x1c, gx as u64 / 50, gy as u64 / 50) % 3) as usize]
                };
            }
        }
        let mut buf = Buffer::new((cols, height), data);
        band.write((0, 0), (cols, height), &mut buf).map_err(gd(what()))?;
        written(&check, &path, || ds.close())?;
        names.push(format!("landcover/{name}"));
    }
    Ok(names)
}

/// Densified ring through the given corner points (closed), in map coordinates.
fn ring(points: &[(f64, f64)], step: f64) -> String {
    let mut out = Vec::new();
    for i in 0..points.len() {
        let (a, b) = (points[i], points[(i + 1) % points.len()]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let n = (len / step).ceil().max(1.0) as usize;
        for k in 0..n {
            let t = k as f64 / n as f64;
            out.push(format!(
                "{:.3} {:.3}",
                a.0 + (b.0 - a.0) * t,
                a.1 + (b.1 - a.1) * t
            ));
        }
    }
    out.push(out[0].clone());
    format!("({})", out.join(", "))
}

/// The AOI: three forest districts (one with a hole, one multipolygon, one triangle) in EPSG:4326
/// (`aoi.gpkg`) and the same shapes in the cube's EPSG:3035 (`aoi_laea.gpkg`).
fn write_aoi(cfg: &SynthConfig, e: &Extent, dir: &Path) -> Result<AoiManifest, SynthError> {
    let r = cfg.resolution;
    // Corners snap to pixel edges so no pixel centre lies on a boundary.
    let x = |f: f64| ((e.xmin + f * e.width() - e.xmin) / r).round() * r + e.xmin;
    let y = |f: f64| ((e.ymin + f * e.height() - e.ymin) / r).round() * r + e.ymin;
    let rect = |x0: f64, x1: f64, y0: f64, y1: f64| {
        vec![(x(x0), y(y0)), (x(x1), y(y0)), (x(x1), y(y1)), (x(x0), y(y1))]
    };
    let step = 10.0 * r;
    let features = vec![
        AoiFeature {
            id: 1,
            name: "Nordwald".into(),
            kind: "state forest".into(),
            wkt_laea: format!(
                "POLYGON ({}, {})",
                ring(&rect(0.10, 0.62, 0.55, 0.92), step),
                ring(&rect(0.25, 0.40, 0.65, 0.80), step)
            ),
        },
        AoiFeature {
            id: 2,
            name: "Suedforst".into(),
            kind: "municipal forest".into(),
            wkt_laea: format!(
                "MULTIPOLYGON (({}), ({}))",
                ring(&rect(0.55, 0.90, 0.10, 0.45), step),
                ring(&rect(0.05, 0.30, 0.08, 0.35), step)
            ),
        },
        AoiFeature {
            id: 3,
            name: "Auwald".into(),
            kind: "private forest".into(),
            wkt_laea: format!(
                "POLYGON ({})",
                ring(
                    &[(x(0.70), y(0.60)), (x(0.95), y(0.62)), (x(0.80), y(0.95))],
                    step
                )
            ),
        },
    ];
    // GeoPackages record a timestamp; pin it so equal seeds give equal files.
    gdal::config::set_config_option("OGR_CURRENT_DATE", "2021-01-01T00:00:00Z").map_err(gd("config"))?;
    write_gpkg(&dir.join("aoi.gpkg"), &features, &wgs84()?, true)?;
    write_gpkg(&dir.join("aoi_laea.gpkg"), &features, &laea()?, false)?;
    Ok(AoiManifest {
        file: "aoi.gpkg".into(),
        file_laea: "aoi_laea.gpkg".into(),
        layer: "districts".into(),
        features,
    })
}

fn write_gpkg(
    path: &Path,
    features: &[AoiFeature],
    srs: &SpatialRef,
    reproject: bool,
) -> Result<(), SynthError> {
    let check = WriteCheck::start();
    let what = || format!("writing {}", path.display());
    let driver = DriverManager::get_driver_by_name("GPKG").map_err(gd(what()))?;
    let mut ds = driver.create_vector_only(path).map_err(gd(what()))?;
    let layer = ds
        .create_layer(LayerOptions {
            name: "districts",
            srs: Some(srs),
            ty: OGRwkbGeometryType::wkbMultiPolygon,
            options: None,
        })
        .map_err(gd(what()))?;
    layer
        .create_defn_fields(&[
            ("id", OGRFieldType::OFTInteger),
            ("name", OGRFieldType::OFTString),
            ("kind", OGRFieldType::OFTString),
        ])
        .map_err(gd(what()))?;
    let to = CoordTransform::new(&laea()?, srs).map_err(gd(what()))?;
    for f in features {
        let mut g = Geometry::from_wkt(&f.wkt_laea).map_err(gd(what()))?;
        if reproject {
            g = g.transform(&to).map_err(gd(what()))?;
        }
        if g.geometry_type() == OGRwkbGeometryType::wkbPolygon {
            let mut m = Geometry::empty(OGRwkbGeometryType::wkbMultiPolygon).map_err(gd(what()))?;
            m.add_geometry(g).map_err(gd(what()))?;
            g = m;
        }
        let mut feat = gdal::vector::Feature::new(layer.defn()).map_err(gd(what()))?;
        feat.set_geometry(g).map_err(gd(what()))?;
        feat.set_field_integer(0, f.id).map_err(gd(what()))?;
        feat.set_field_string(1, &f.name).map_err(gd(what()))?;
        feat.set_field_string(2, &f.kind).map_err(gd(what()))?;
        feat.create(&layer).map_err(gd(what()))?;
    }
    written(&check, path, || ds.close())
}

/// [`ForceLayout`] as a command-line value.
#[derive(Debug, Clone, Copy)]
pub struct ForceLayoutArg(pub ForceLayout);

impl std::str::FromStr for ForceLayoutArg {
    type Err = treesits_core::choice::UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(ForceLayoutArg)
    }
}
