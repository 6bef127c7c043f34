//! Cutting a chunk window into record batches that fit the memory budget.
//!
//! A chunk is a window of block-aligned tile rows across the whole tile; its pixel-major series need
//! every acquisition of a pixel before the pixel is complete. When the window's observations would
//! exceed the batch limit ([`batch_bytes`]), [`crate::scan::ChunkReader::read_batches`] screens the
//! whole window once, then cuts it into column ranges ([`column_parts`]), each one record batch:
//!
//! - **tiled files** (FORCE ≥ 3.8, COGs: 256 px blocks) are cut along their blocks and read range by
//!   range: each block is still decoded once;
//! - **strip files** (FORCE ≤ 3.7: one block across the tile, e.g. 3000 × 300) would decode every
//!   strip once per range. Instead each strip band of each acquisition is decoded once, for the whole
//!   window, and the valid values of every range are appended to that range's spill: an unnamed
//!   temporary file ([`SpillWriter`], `O_TMPFILE`, gone when the process ends, even when killed),
//!   from which the range is then merged like a tiled read. The spill holds a window's valid values
//!   once (2 bytes per band and observation) and passes through the page cache, not the heap.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use treesits_core::PixelWindow;

use crate::scan::CubeError;

/// Bytes one pixel of a batch holds beside its observations: row, col, list offset and the reader's
/// cursor (4 each), and `n_obs` and the checksum column when the batch is written.
pub const PIXEL_BYTES: usize = 24;

/// Column alignment of the ranges a strip window is cut into (a strip is decoded whole anyway).
pub const STRIP_ALIGN: usize = 64;

/// Bytes of a record batch's columns: per observation the date (4), the sensor (1) and 2 per band;
/// per pixel [`PIXEL_BYTES`].
pub fn batch_bytes(pixels: usize, observations: usize, bands: usize) -> usize {
    observations * (5 + 2 * bands) + pixels * PIXEL_BYTES
}

/// One column range of a window: its own window and which of the window's selected pixels
/// (indices into them, ascending) fall into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub window: PixelWindow,
    pub members: Vec<u32>,
}

impl Part {
    /// The members' positions in the part's own window (row-major), for the reader's `pixel` map.
    pub fn pixels(&self, w: &PixelWindow, pixel: &impl Fn(usize) -> usize) -> Vec<u32> {
        let c0 = self.window.col - w.col;
        self.members
            .iter()
            .map(|&i| {
                let p = pixel(i as usize);
                ((p / w.cols) * self.window.cols + p % w.cols - c0) as u32
            })
            .collect()
    }
}

/// Cuts window `w` into column ranges of whole `align`-column groups (the last one possibly narrower)
/// whose batches stay within `limit` bytes, given each selected pixel's observation count
/// (`counts[i]` for selected pixel `i` at window position `pixel(i)`). A group that alone exceeds the
/// limit is a part of its own: a range is never narrower than `align` columns.
pub fn column_parts(
    w: &PixelWindow,
    n: usize,
    pixel: &impl Fn(usize) -> usize,
    counts: &[u32],
    align: usize,
    limit: usize,
    bands: usize,
) -> Vec<Part> {
    let align = align.max(1);
    let groups = w.cols.div_ceil(align);
    let mut pixels = vec![0usize; groups];
    let mut obs = vec![0usize; groups];
    for (i, &c) in counts.iter().enumerate().take(n) {
        let g = pixel(i) % w.cols / align;
        pixels[g] += 1;
        obs[g] += c as usize;
    }
    // Consecutive groups, greedily, as long as the batch fits.
    let mut part_of_group = vec![0usize; groups];
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let (mut px, mut ob) = (0, 0);
    for g in 0..groups {
        let fits = batch_bytes(px + pixels[g], ob + obs[g], bands) <= limit;
        match ranges.last_mut() {
            Some(r) if fits => r.1 = g + 1,
            _ => {
                ranges.push((g, g + 1));
                (px, ob) = (0, 0);
            }
        }
        px += pixels[g];
        ob += obs[g];
        part_of_group[g] = ranges.len() - 1;
    }
    let mut parts: Vec<Part> = ranges
        .iter()
        .map(|&(g0, g1)| {
            let col = g0 * align;
            let end = (g1 * align).min(w.cols);
            Part {
                window: PixelWindow::new(w.row, w.col + col, w.rows, end - col),
                members: Vec::new(),
            }
        })
        .collect();
    for i in 0..n {
        let g = pixel(i) % w.cols / align;
        parts[part_of_group[g]].members.push(i as u32);
    }
    parts
}

/// The validity bits of a part's members (`members` index the window's `words`-per-acquisition
/// bits), into `out`: `members.len().div_ceil(64)` words per acquisition.
pub fn part_validity(valid: &[u64], words: usize, acquisitions: usize, members: &[u32], out: &mut Vec<u64>) {
    let part_words = members.len().div_ceil(64);
    out.clear();
    out.resize(acquisitions * part_words, 0);
    for k in 0..acquisitions {
        let bits = &valid[k * words..(k + 1) * words];
        let dst = &mut out[k * part_words..(k + 1) * part_words];
        for (j, &i) in members.iter().enumerate() {
            let bit = bits[i as usize >> 6] >> (i & 63) & 1;
            dst[j >> 6] |= bit << (j & 63);
        }
    }
}

/// A part's spill being written: per acquisition (in order), its bands one after the other, each the
/// values of the part's pixels valid on that acquisition, in pixel order (native-endian Int16).
pub struct SpillWriter {
    out: BufWriter<File>,
    dir: String,
    /// Per acquisition: first value and values per band.
    start: Vec<usize>,
    count: Vec<usize>,
    /// The acquisition being appended.
    current: Option<usize>,
    written: usize,
    bands: usize,
    bytes: Vec<u8>,
}

impl SpillWriter {
    /// A writer on a new unnamed temporary file in `dir`.
    pub fn new(dir: &Path, acquisitions: usize, bands: usize) -> std::io::Result<SpillWriter> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(SpillWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            dir: dir.display().to_string(),
            start: vec![0; acquisitions],
            count: vec![0; acquisitions],
            current: None,
            written: 0,
            bands,
            bytes: Vec::new(),
        })
    }

    /// Appends one band of acquisition `k`: the values of `band` (a window's values) at `positions`.
    /// An acquisition's bands are appended one after the other, all with the same positions.
    pub fn append(&mut self, k: usize, band: &[i16], positions: &[u32]) -> std::io::Result<()> {
        if self.current != Some(k) {
            self.current = Some(k);
            self.start[k] = self.written;
            self.count[k] = positions.len();
        }
        self.bytes.clear();
        self.bytes
            .extend(positions.iter().flat_map(|&p| band[p as usize].to_ne_bytes()));
        self.written += positions.len();
        self.out.write_all(&self.bytes)
    }

    pub fn finish(self) -> std::io::Result<Spill> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        debug_assert!(self.bands > 0);
        Ok(Spill {
            file,
            dir: self.dir,
            start: self.start,
            count: self.count,
            bytes: std::cell::RefCell::new(Vec::new()),
        })
    }
}

/// A part's spill, written: read back band by band and acquisition by acquisition.
pub struct Spill {
    file: File,
    dir: String,
    start: Vec<usize>,
    count: Vec<usize>,
    bytes: std::cell::RefCell<Vec<u8>>,
}

impl Spill {
    /// Band `b` (index among the series' bands) of acquisition `k`: its valid values, into `out`
    /// (whose length is their number).
    pub fn read(&self, k: usize, b: usize, out: &mut [i16]) -> Result<(), CubeError> {
        debug_assert_eq!(out.len(), self.count[k]);
        let at = (self.start[k] + b * self.count[k]) * 2;
        let mut bytes = self.bytes.borrow_mut();
        bytes.resize(out.len() * 2, 0);
        self.file
            .read_exact_at(&mut bytes, at as u64)
            .map_err(|source| CubeError::Spill {
                dir: self.dir.clone(),
                source,
            })?;
        for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *v = i16::from_ne_bytes([b[0], b[1]]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_alignment_and_the_limit() {
        // 2 rows × 10 columns, every pixel selected, 10 observations each, 1 band: 7 · 10 + 24 = 94
        // bytes per pixel, 188 per column.
        let w = PixelWindow::new(4, 100, 2, 10);
        let counts = vec![10u32; 20];
        let px = |i: usize| i;
        let parts = column_parts(&w, 20, &px, &counts, 4, 188 * 8, 1);
        let windows: Vec<_> = parts.iter().map(|p| (p.window.col, p.window.cols)).collect();
        assert_eq!(windows, [(100, 8), (108, 2)]);
        assert_eq!(parts[1].members, [8, 9, 18, 19]);
        assert_eq!(parts[1].pixels(&w, &px), [0, 1, 2, 3]);
        // Too small a limit: one group per part, never narrower.
        let parts = column_parts(&w, 20, &px, &counts, 4, 1, 1);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(|p| p.members.len()).sum::<usize>(), 20);
        // Empty columns cost nothing: a mask of the first column only is one part.
        let sel = [0usize, 10];
        let parts = column_parts(&w, 2, &|i| sel[i], &[10, 10], 4, 188, 1);
        assert_eq!(parts.len(), 1);
    }

    #[test]
    fn part_validity_picks_the_members_bits() {
        // 70 pixels, 2 acquisitions: pixel i valid on acquisition k when (i + k) % 3 == 0.
        let words = 2;
        let mut valid = vec![0u64; 2 * words];
        for k in 0..2 {
            for i in 0..70 {
                if (i + k) % 3 == 0 {
                    valid[k * words + i / 64] |= 1 << (i % 64);
                }
            }
        }
        let members: Vec<u32> = (60..70).collect();
        let mut out = Vec::new();
        part_validity(&valid, words, 2, &members, &mut out);
        for (k, bits) in out.iter().enumerate() {
            for (j, &i) in members.iter().enumerate() {
                assert_eq!(bits >> j & 1 == 1, (i as usize + k).is_multiple_of(3));
            }
        }
    }

    #[test]
    fn a_spill_gives_back_what_was_appended() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SpillWriter::new(d.path(), 3, 2).unwrap();
        let band0 = [10i16, 11, 12, 13];
        let band1 = [20i16, 21, 22, 23];
        w.append(0, &band0, &[1, 3]).unwrap();
        w.append(0, &band1, &[1, 3]).unwrap();
        w.append(2, &band0, &[0]).unwrap();
        w.append(2, &band1, &[0]).unwrap();
        let s = w.finish().unwrap();
        let mut two = [0i16; 2];
        s.read(0, 1, &mut two).unwrap();
        assert_eq!(two, [21, 23]);
        s.read(0, 0, &mut two).unwrap();
        assert_eq!(two, [11, 13]);
        let mut one = [0i16; 1];
        s.read(2, 1, &mut one).unwrap();
        assert_eq!(one, [20]);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "the spill has no name"
        );
    }
}
