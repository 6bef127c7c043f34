//! Grids of rasters: where a reference raster lies on the map's grid, and why it may not.

use std::fmt;

use gdal::spatial_ref::SpatialRef;
use gdal::Dataset;

use crate::{AssessError, PixelArea};

/// Grid facts of a raster.
#[derive(Debug, Clone)]
pub(crate) struct RasterGrid {
    pub(crate) size: (usize, usize),
    pub(crate) gt: [f64; 6],
    pub(crate) srs: Option<SpatialRef>,
}

impl RasterGrid {
    pub(crate) fn of(ds: &Dataset) -> RasterGrid {
        RasterGrid {
            size: ds.raster_size(),
            gt: ds.geo_transform().unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
            srs: ds.spatial_ref().ok(),
        }
    }

    /// The pixel size and, for a projected CRS, the area of a pixel in square metres.
    pub(crate) fn pixel_area(&self) -> PixelArea {
        let gt = self.gt;
        let px = (gt[1] * gt[5] - gt[2] * gt[4]).abs();
        let square_metres = self
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

    /// The gdalwarp call that resamples the raster at `path` onto this grid.
    fn warp_hint(&self, path: &str) -> WarpHint {
        let m = self.gt;
        WarpHint {
            crs: self
                .srs
                .as_ref()
                .and_then(|s| s.auth_code().ok().map(|c| format!("EPSG:{c}"))),
            extent: [
                m[0],
                m[3] + m[5] * self.size.1 as f64,
                m[0] + m[1] * self.size.0 as f64,
                m[3],
            ],
            resolution: (m[1], -m[5]),
            path: path.to_string(),
        }
    }
}

/// Why a reference raster is not on the map's grid, with the numbers that differ.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridProblem {
    #[error("it has no coordinate reference system")]
    NoCrs,
    #[error("its coordinate reference system differs from the map's")]
    OtherCrs,
    #[error("rotated grids are not supported")]
    Rotated,
    #[error("pixel size {x} x {y} vs the map's {map_x} x {map_y}")]
    PixelSize { x: f64, y: f64, map_x: f64, map_y: f64 },
    /// How far the reference's origin lies off the map's pixel edges, in map pixels.
    #[error("its origin is {cols:.3} columns and {rows:.3} rows off the map's pixel edges")]
    Origin { cols: f64, rows: f64 },
}

/// The gdalwarp call that puts a reference raster onto the map's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct WarpHint {
    /// The map's CRS as `EPSG:…`, if it has an EPSG code.
    pub crs: Option<String>,
    /// xmin, ymin, xmax, ymax of the map.
    pub extent: [f64; 4],
    /// The map's pixel size (x, y).
    pub resolution: (f64, f64),
    /// The reference raster.
    pub path: String,
}

impl fmt::Display for WarpHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [xmin, ymin, xmax, ymax] = self.extent;
        write!(
            f,
            "gdalwarp -t_srs {} -te {xmin} {ymin} {xmax} {ymax} -tr {} {} -r near {} on_map_grid.tif",
            self.crs.as_deref().unwrap_or("<the map's CRS>"),
            self.resolution.0,
            self.resolution.1,
            self.path
        )
    }
}

/// The window of the map a reference raster covers, in map pixels: (col, row, cols, rows) and the
/// reference pixel of its corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overlap {
    pub(crate) map_col: usize,
    pub(crate) map_row: usize,
    pub(crate) ref_col: usize,
    pub(crate) ref_row: usize,
    pub(crate) cols: usize,
    pub(crate) rows: usize,
}

impl Overlap {
    pub(crate) fn is_disjoint(&self, o: &Overlap) -> bool {
        self.map_col + self.cols <= o.map_col
            || o.map_col + o.cols <= self.map_col
            || self.map_row + self.rows <= o.map_row
            || o.map_row + o.rows <= self.map_row
    }
}

/// Whether `reference` lies on the map's grid: the same CRS and pixel size, no rotation, and an
/// origin on the map's pixel edges. Returns its offset from the map's origin in whole pixels.
fn alignment(map: &RasterGrid, reference: &RasterGrid) -> Result<(i64, i64), GridProblem> {
    let (m, r) = (map.gt, reference.gt);
    match (&map.srs, &reference.srs) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), None) => return Err(GridProblem::NoCrs),
        _ => return Err(GridProblem::OtherCrs),
    }
    if m[2] != 0.0 || m[4] != 0.0 || r[2] != 0.0 || r[4] != 0.0 {
        return Err(GridProblem::Rotated);
    }
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    if !same(m[1], r[1]) || !same(m[5], r[5]) {
        return Err(GridProblem::PixelSize {
            x: r[1],
            y: -r[5],
            map_x: m[1],
            map_y: -m[5],
        });
    }
    let dc = (r[0] - m[0]) / m[1];
    let dr = (r[3] - m[3]) / m[5];
    if (dc - dc.round()).abs() > 1e-6 || (dr - dr.round()).abs() > 1e-6 {
        return Err(GridProblem::Origin {
            cols: dc - dc.round(),
            rows: dr - dr.round(),
        });
    }
    Ok((dc.round() as i64, dr.round() as i64))
}

/// The part of the map that the reference raster at `path` covers; refused when it is not on the
/// map's grid or misses the map.
pub(crate) fn overlap(
    map: &RasterGrid,
    reference: &RasterGrid,
    path: &str,
    map_path: &str,
) -> Result<Overlap, AssessError> {
    let (dc, dr) = alignment(map, reference).map_err(|problem| AssessError::GridMismatch {
        path: path.to_string(),
        problem,
        hint: Box::new(map.warp_hint(path)),
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn problem(map: &RasterGrid, reference: &RasterGrid) -> GridProblem {
        match overlap(map, reference, "r.tif", "m.tif") {
            Err(AssessError::GridMismatch { problem, .. }) => problem,
            other => panic!("expected a grid mismatch, got {other:?}"),
        }
    }

    #[test]
    fn misaligned_or_disjoint_grids_are_refused() {
        let map = grid([1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        let shifted = grid([1005.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        assert_eq!(
            problem(&map, &shifted),
            // 0.5 rounds away from zero: the nearest edge is one column right.
            GridProblem::Origin {
                cols: -0.5,
                rows: 0.0
            }
        );
        let e = overlap(&map, &shifted, "r.tif", "m.tif").unwrap_err().to_string();
        assert!(e.contains("-0.500 columns and 0.000 rows off"), "{e}");
        let coarse = grid([1000.0, 20.0, 0.0, 5000.0, 0.0, -20.0], (50, 50));
        let e = overlap(&map, &coarse, "r.tif", "m.tif").unwrap_err().to_string();
        assert!(e.contains("pixel size 20 x 20 vs the map's 10 x 10"), "{e}");
        assert!(
            e.ends_with(
                "gdalwarp -t_srs EPSG:3035 -te 1000 4000 2000 5000 -tr 10 10 -r near r.tif on_map_grid.tif"
            ),
            "{e}"
        );
        let far = grid([100000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        assert!(matches!(
            overlap(&map, &far, "r.tif", "m.tif"),
            Err(AssessError::NoOverlap { .. })
        ));
        let mut other_crs = grid([1000.0, 10.0, 0.0, 5000.0, 0.0, -10.0], (100, 100));
        other_crs.srs = Some(SpatialRef::from_epsg(32632).unwrap());
        assert_eq!(problem(&map, &other_crs), GridProblem::OtherCrs);
        other_crs.srs = None;
        assert_eq!(problem(&map, &other_crs), GridProblem::NoCrs);
        let rotated = grid([1000.0, 10.0, 0.5, 5000.0, 0.0, -10.0], (100, 100));
        assert_eq!(problem(&map, &rotated), GridProblem::Rotated);
    }

    #[test]
    fn windows_that_share_a_pixel_are_not_disjoint() {
        let w = |map_col, map_row| Overlap {
            map_col,
            map_row,
            ref_col: 0,
            ref_row: 0,
            cols: 10,
            rows: 5,
        };
        assert!(w(0, 0).is_disjoint(&w(10, 0)));
        assert!(w(0, 0).is_disjoint(&w(0, 5)));
        assert!(!w(0, 0).is_disjoint(&w(9, 4)));
        assert!(!w(9, 4).is_disjoint(&w(0, 0)));
    }
}
