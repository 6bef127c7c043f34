//! Value masks: rasters such as ESA WorldCover (3° × 3° tiles in EPSG:4326) whose values say which
//! pixels to process, resampled nearest-neighbour onto the cube grid.
//!
//! A cube pixel takes the value of the mask pixel that holds its centre, from the first `--mask`
//! raster (in command-line order) that covers it with a valid value; it is kept when that value is in
//! the value set. A pixel that no mask raster covers is dropped. Work goes by the tile's row blocks:
//! only the part of a mask raster under one block of rows is read at a time.

use gdal::raster::GdalDataType;
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::Dataset;
use treesits_core::grid::{Extent, TileGrid, TileId};
use treesits_core::value_set::ValueSet;

use treesits_gdal::error::GdalCause;
use treesits_gdal::srs::gis_order;

/// Why a mask raster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MaskProblem {
    #[error("{0}: give a raster GDAL can read")]
    Open(#[source] GdalCause),
    #[error("it has no raster band")]
    NoBand,
    #[error("it has no geotransform: georeference it first")]
    NoGeotransform,
    #[error("its geotransform is rotated or not north-up: warp it with gdalwarp first")]
    NotNorthUp,
    #[error("it has no CRS: assign one with gdal_edit.py -a_srs")]
    NoCrs,
    #[error("its band type is unknown")]
    UnknownBandType,
    #[error("{0}")]
    Gdal(#[source] GdalCause),
    #[error(
        "it does not overlap the AOI (its extent, reprojected onto the cube, misses the AOI's): drop it \
         or check its CRS"
    )]
    Outside,
}

/// A mask raster that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct MaskError {
    pub path: String,
    #[source]
    pub problem: MaskProblem,
}

/// Cube-CRS columns between two exactly reprojected pixel centres; those in between are interpolated
/// linearly (over 32 pixels the error is far below a millimetre).
const TRANSFORM_STEP: usize = 32;

/// A mask raster checked on the main thread: it opens, has a north-up geotransform and overlaps the AOI.
#[derive(Debug, Clone)]
pub struct MaskRaster {
    pub path: String,
}

/// A mask raster opened by one worker.
pub struct OpenMaskRaster {
    path: String,
    ds: Dataset,
    geotransform: [f64; 6],
    size: (usize, usize),
    nodata: Option<f64>,
    to_mask: CoordTransform,
}

fn gdal_failure(path: &str) -> impl Fn(gdal::errors::GdalError) -> MaskError + '_ {
    move |e| MaskError {
        path: path.to_string(),
        problem: MaskProblem::Gdal(GdalCause::new(e)),
    }
}

impl MaskRaster {
    /// Checks that `path` is a usable single-band raster overlapping `aoi` (in the cube's CRS).
    pub fn inspect(path: &str, cube_wkt: &str, aoi: &Extent) -> Result<MaskRaster, MaskError> {
        let open = OpenMaskRaster::open(path, cube_wkt)?;
        let gt = open.geotransform;
        let (w, h) = open.size;
        let (x0, x1) = (gt[0], gt[0] + w as f64 * gt[1]);
        let (y0, y1) = (gt[3] + h as f64 * gt[5], gt[3]);
        let to_cube = CoordTransform::new(
            &gis_order(open.ds.spatial_ref().map_err(gdal_failure(path))?),
            &gis_order(SpatialRef::from_wkt(cube_wkt).map_err(gdal_failure(path))?),
        )
        .map_err(gdal_failure(path))?;
        // A mask far outside the cube's projection area may not reproject at all: that is no overlap.
        let overlaps = to_cube
            .transform_bounds(&[x0, y0, x1, y1], 21)
            .ok()
            .and_then(|b| {
                aoi.intersection(&Extent {
                    xmin: b[0],
                    ymin: b[1],
                    xmax: b[2],
                    ymax: b[3],
                })
            })
            .is_some();
        if !overlaps {
            return Err(MaskError {
                path: path.to_string(),
                problem: MaskProblem::Outside,
            });
        }
        Ok(MaskRaster {
            path: path.to_string(),
        })
    }

    /// Opens it for one worker.
    pub fn open(&self, cube_wkt: &str) -> Result<OpenMaskRaster, MaskError> {
        OpenMaskRaster::open(&self.path, cube_wkt)
    }
}

impl OpenMaskRaster {
    fn open(path: &str, cube_wkt: &str) -> Result<OpenMaskRaster, MaskError> {
        let fail = |problem: MaskProblem| MaskError {
            path: path.to_string(),
            problem,
        };
        let ds = Dataset::open(path).map_err(|e| fail(MaskProblem::Open(GdalCause::new(e))))?;
        if ds.raster_count() == 0 {
            return Err(fail(MaskProblem::NoBand));
        }
        let gt = ds
            .geo_transform()
            .map_err(|_| fail(MaskProblem::NoGeotransform))?;
        if gt[2] != 0.0 || gt[4] != 0.0 || gt[1] <= 0.0 || gt[5] >= 0.0 {
            return Err(fail(MaskProblem::NotNorthUp));
        }
        let srs = ds.spatial_ref().map_err(|_| fail(MaskProblem::NoCrs))?;
        let cube = SpatialRef::from_wkt(cube_wkt).map_err(gdal_failure(path))?;
        let to_mask = CoordTransform::new(&gis_order(cube), &gis_order(srs)).map_err(gdal_failure(path))?;
        let band = ds.rasterband(1).map_err(gdal_failure(path))?;
        let nodata = band.no_data_value();
        if band.band_type() == GdalDataType::Unknown {
            return Err(fail(MaskProblem::UnknownBandType));
        }
        let size = ds.raster_size();
        Ok(OpenMaskRaster {
            path: path.to_string(),
            ds,
            geotransform: gt,
            size,
            nodata,
            to_mask,
        })
    }

    /// The part of this raster (pixel window: col, row, cols, rows) under a cube extent, padded by a
    /// pixel; `None` if they do not meet.
    fn window_under(&self, e: &Extent) -> Option<(usize, usize, usize, usize)> {
        let b = self
            .to_mask
            .transform_bounds(&[e.xmin, e.ymin, e.xmax, e.ymax], 21)
            .ok()?;
        let gt = &self.geotransform;
        let c0 = ((b[0] - gt[0]) / gt[1]).floor() - 1.0;
        let c1 = ((b[2] - gt[0]) / gt[1]).ceil() + 1.0;
        let r0 = ((b[3] - gt[3]) / gt[5]).floor() - 1.0;
        let r1 = ((b[1] - gt[3]) / gt[5]).ceil() + 1.0;
        let (w, h) = (self.size.0 as f64, self.size.1 as f64);
        let (c0, c1, r0, r1) = (c0.max(0.0), c1.min(w), r0.max(0.0), r1.min(h));
        (c1 > c0 && r1 > r0).then_some((c0 as usize, r0 as usize, (c1 - c0) as usize, (r1 - r0) as usize))
    }
}

/// Clears the 1s of a tile mask (`mask`, row-major, the tile's full grid) whose pixels the value
/// masks do not keep.
pub fn apply(
    rasters: &[OpenMaskRaster],
    values: &ValueSet,
    grid: &TileGrid,
    tile: TileId,
    mask: &mut [u8],
) -> Result<(), MaskError> {
    let (cols, _) = grid.tile_pixels;
    let res = grid.resolution;
    let [x0, _, _, y0, _, _] = grid.geotransform(tile);
    for block in grid.row_blocks(grid.block_rows) {
        let rows = &mut mask[block.row * cols..(block.row + block.rows) * cols];
        if !rows.contains(&1) {
            continue;
        }
        let block_extent = Extent {
            xmin: x0,
            xmax: x0 + cols as f64 * res,
            ymax: y0 - block.row as f64 * res,
            ymin: y0 - (block.row + block.rows) as f64 * res,
        };
        // 0 undecided, 1 keep, 2 drop; the first raster with a valid value decides.
        let mut decision = vec![0u8; rows.len()];
        for raster in rasters {
            let Some((wc, wr, ww, wh)) = raster.window_under(&block_extent) else {
                continue;
            };
            let fail = &gdal_failure(&raster.path);
            let data = raster
                .ds
                .rasterband(1)
                .and_then(|b| b.read_as::<f64>((wc as isize, wr as isize), (ww, wh), (ww, wh), None))
                .map_err(fail)?
                .into_shape_and_vec()
                .1;
            let gt = raster.geotransform;
            let mut xs = Vec::with_capacity(cols / TRANSFORM_STEP + 2);
            for r in 0..block.rows {
                let line = &rows[r * cols..(r + 1) * cols];
                if !line.contains(&1) {
                    continue;
                }
                // Exact positions every TRANSFORM_STEP columns and at the last column.
                xs.clear();
                xs.extend((0..cols).step_by(TRANSFORM_STEP).map(|c| c as f64));
                if (cols - 1) % TRANSFORM_STEP != 0 {
                    xs.push((cols - 1) as f64);
                }
                let knots: Vec<usize> = xs.iter().map(|&c| c as usize).collect();
                let mut mx: Vec<f64> = knots.iter().map(|&c| x0 + (c as f64 + 0.5) * res).collect();
                let y = y0 - ((block.row + r) as f64 + 0.5) * res;
                let mut my = vec![y; knots.len()];
                let mut mz = vec![0.0; knots.len()];
                raster
                    .to_mask
                    .transform_coords(&mut mx, &mut my, &mut mz)
                    .map_err(fail)?;
                let decided = &mut decision[r * cols..(r + 1) * cols];
                for k in 0..knots.len() {
                    let c_lo = knots[k];
                    let c_hi = knots.get(k + 1).copied().unwrap_or(c_lo + 1).min(cols);
                    for c in c_lo..c_hi {
                        if line[c] != 1 || decided[c] != 0 {
                            continue;
                        }
                        let (px, py) = if c == c_lo || k + 1 >= knots.len() {
                            (mx[k], my[k])
                        } else {
                            let t = (c - c_lo) as f64 / (knots[k + 1] - c_lo) as f64;
                            (mx[k] + t * (mx[k + 1] - mx[k]), my[k] + t * (my[k + 1] - my[k]))
                        };
                        let col = ((px - gt[0]) / gt[1]).floor() - wc as f64;
                        let row = ((py - gt[3]) / gt[5]).floor() - wr as f64;
                        if col < 0.0 || row < 0.0 || col >= ww as f64 || row >= wh as f64 {
                            continue;
                        }
                        let v = data[row as usize * ww + col as usize];
                        if v.is_nan() || raster.nodata == Some(v) {
                            continue;
                        }
                        decided[c] = if values.contains(v) { 1 } else { 2 };
                    }
                }
            }
        }
        for (m, d) in rows.iter_mut().zip(&decision) {
            if *m == 1 && *d != 1 {
                *m = 0;
            }
        }
    }
    Ok(())
}
