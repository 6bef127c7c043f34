//! Counting: map pixels per class and reference × map samples, streamed from the rasters in strips
//! of rows, in parallel (one GDAL handle per worker).

use gdal::{Dataset, GdalOpenFlags};
use rayon::prelude::*;
use treesits_gdal::error::GdalCause;
use treesits_gdal::vector::{self, OpenError};

use crate::grid::{Overlap, RasterGrid};
use crate::{AssessError, Dropped, Input};

/// Rows per strip when rasters are streamed.
const STRIP_ROWS: usize = 256;

/// Why a raster that opened once could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFailure {
    /// A worker could not open its own handle.
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Read(#[from] GdalCause),
}

/// Per-code histograms: `map[m]` valid map pixels; `pairs[r * 256 + m]` reference × map samples.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) map: Vec<u64>,
    pub(crate) pairs: Vec<u64>,
    pub(crate) dropped: Dropped,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            map: vec![0; 256],
            pairs: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    pub(crate) fn pair(&mut self, r: u8, m: u8) {
        if self.pairs.is_empty() {
            self.pairs = vec![0; 256 * 256];
        }
        self.pairs[usize::from(r) * 256 + usize::from(m)] += 1;
    }

    pub(crate) fn merge(mut self, o: Tally) -> Tally {
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

    /// The reference × map counts, all zero when nothing was paired.
    pub(crate) fn into_pairs(self) -> (Vec<u64>, Dropped) {
        let pairs = if self.pairs.is_empty() {
            vec![0; 256 * 256]
        } else {
            self.pairs
        };
        (pairs, self.dropped)
    }
}

/// A raster opened read-only by one worker.
pub(crate) fn open_raster(input: Input, path: &str) -> Result<Dataset, AssessError> {
    vector::open(
        path,
        GdalOpenFlags::GDAL_OF_RASTER,
        "not a raster GDAL recognises",
    )
    .map_err(|e| AssessError::Read {
        input,
        path: path.to_string(),
        source: e.into(),
    })
}

/// The worker's own handle on `path`, opened for its first strip.
fn handle<'a>(slot: &'a mut Option<Dataset>, input: Input, path: &str) -> Result<&'a Dataset, AssessError> {
    if slot.is_none() {
        *slot = Some(open_raster(input, path)?);
    }
    Ok(slot.as_ref().expect("opened above"))
}

/// Band 1 of `ds` over the window at (`col`, `row`) of `cols` × `rows` pixels.
pub(crate) fn read_window(
    ds: &Dataset,
    input: Input,
    path: &str,
    (col, row): (usize, usize),
    (cols, rows): (usize, usize),
) -> Result<Vec<u8>, AssessError> {
    ds.rasterband(1)
        .and_then(|b| b.read_as::<u8>((col as isize, row as isize), (cols, rows), (cols, rows), None))
        .map(|buf| buf.into_shape_and_vec().1)
        .map_err(|e| AssessError::Read {
            input,
            path: path.to_string(),
            source: GdalCause::new(e).into(),
        })
}

/// Counts the valid map pixels per code, streaming strips in parallel.
pub(crate) fn count_map(
    path: &str,
    grid: &RasterGrid,
    nodata: u8,
    ignored: &[bool; 256],
) -> Result<Tally, AssessError> {
    let (cols, rows) = grid.size;
    let strips = rows.div_ceil(STRIP_ROWS);
    (0..strips)
        .into_par_iter()
        .map_init(
            || None,
            |slot, s| {
                let ds = handle(slot, Input::Map, path)?;
                let row = s * STRIP_ROWS;
                let h = STRIP_ROWS.min(rows - row);
                let data = read_window(ds, Input::Map, path, (0, row), (cols, h))?;
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

/// The nodata values of a pixel-by-pixel comparison and the codes left out.
pub(crate) struct PixelRules<'a> {
    pub(crate) map_nodata: u8,
    pub(crate) ref_nodata: Option<u8>,
    pub(crate) ignored: &'a [bool; 256],
}

impl PixelRules<'_> {
    pub(crate) fn count(&self, t: &mut Tally, mc: u8, rc: u8) {
        if Some(rc) == self.ref_nodata {
            t.dropped.reference_nodata += 1;
        } else if mc == self.map_nodata {
            t.dropped.map_nodata += 1;
        } else if self.ignored[usize::from(mc)] || self.ignored[usize::from(rc)] {
            t.dropped.ignored += 1;
        } else {
            t.pair(rc, mc);
        }
    }
}

/// Compares the map with one reference raster over their overlap, pixel by pixel.
pub(crate) fn compare_raster(
    map_path: &str,
    ref_path: &str,
    o: Overlap,
    rules: &PixelRules,
) -> Result<Tally, AssessError> {
    let strips = o.rows.div_ceil(STRIP_ROWS);
    (0..strips)
        .into_par_iter()
        .map_init(
            || (None, None),
            |(m, r), s| {
                let m = handle(m, Input::Map, map_path)?;
                let r = handle(r, Input::Reference, ref_path)?;
                let off = s * STRIP_ROWS;
                let size = (o.cols, STRIP_ROWS.min(o.rows - off));
                let at = (o.map_col, o.map_row + off);
                let mv = read_window(m, Input::Map, map_path, at, size)?;
                let at = (o.ref_col, o.ref_row + off);
                let rv = read_window(r, Input::Reference, ref_path, at, size)?;
                let mut t = Tally::new();
                for (&mc, &rc) in mv.iter().zip(&rv) {
                    rules.count(&mut t, mc, rc);
                }
                Ok(t)
            },
        )
        .try_reduce(Tally::new, |a, b| Ok(a.merge(b)))
}
