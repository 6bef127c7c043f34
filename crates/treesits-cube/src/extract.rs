//! Extraction of a tile into time-series chunks, in parallel, one GDAL handle set per worker.
//!
//! With an output directory, every chunk is written under a temporary name and renamed into place only
//! after all chunks succeeded, so a failed or killed run leaves no file that looks complete; chunk files
//! of the same tile left by an earlier run with more chunks are removed in the same step. On a stream
//! (stdout), chunks are read in waves of one per worker and written in row order.
//!
//! Memory per worker is about one chunk's observations (moved, not copied, into the Arrow batch) plus
//! its compressed form; GDAL's block cache is bounded by [`ExtractPlan::gdal_cache_bytes`].

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use treesits_core::chunk::{ChunkColumns, ChunkError, ChunkMetadata, ChunkWriter};
use treesits_core::level2::{BOA_NODATA, BOA_SCALE};
use treesits_core::memory::{human_bytes, MemoryBudget};
use treesits_core::{Date, PixelWindow, QaiScreen, Sensor};

use treesits_core::atomic::{abort_point, remove_partials, AtomicPath, OutputLock};
use treesits_core::names::{chunk_file_name, chunk_index};
use treesits_core::{Location, TileId};

use crate::scan::{ChunkReader, CubeError, TileScan};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error("writing {path}")]
    Chunk { path: String, source: ChunkError },
    #[error("writing {path}")]
    Io { path: String, source: std::io::Error },
    /// Another run holds the tile's lock in the output directory.
    #[error("{source}")]
    Locked { source: std::io::Error },
}

/// A checked extraction: what to read and how.
#[derive(Debug, Clone)]
pub struct ExtractPlan {
    pub scan: TileScan,
    pub start: Date,
    pub end: Date,
    pub sensors: Vec<Sensor>,
    pub screen: QaiScreen,
    pub mask: Option<Location>,
    pub chunk_rows: usize,
    /// Datasets all workers together keep open between chunks ([`crate::scan::MAX_OPEN_DATASETS`]
    /// by default); acquisitions beyond each worker's share are reopened for every chunk.
    pub max_open_datasets: usize,
    /// zstd level of the chunks ([`treesits_core::chunk::ZSTD_LEVELS`]).
    pub zstd_level: i32,
    /// Bytes per group of acquisitions whose values are merged into the output together
    /// ([`ChunkReader::with_group_bytes`]); `None`: the reader's default.
    pub group_bytes: Option<usize>,
    /// What the workers' chunks, batches and buffers must fit together ([`ExtractPlan::workers`],
    /// [`ExtractPlan::batch_limit`]).
    pub memory: MemoryBudget,
    /// A fixed [`ExtractPlan::batch_limit`] (tests, benchmarks).
    pub batch_bytes: Option<usize>,
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    pub chunks: usize,
    pub pixels: usize,
    /// Pixels kept (in the mask) that have no valid observation.
    pub empty_pixels: usize,
    pub observations: usize,
}

impl ExtractSummary {
    /// Counts one record batch (of a chunk counted separately).
    fn add_batch(&mut self, c: &ChunkColumns) {
        self.pixels += c.pixels();
        self.empty_pixels += c.offsets.windows(2).filter(|o| o[0] == o[1]).count();
        self.observations += c.observations();
    }

    fn merge(&mut self, s: &ExtractSummary) {
        self.chunks += s.chunks;
        self.pixels += s.pixels;
        self.empty_pixels += s.empty_pixels;
        self.observations += s.observations;
    }
}

/// See [`ExtractPlan::dataset_bytes`].
pub const MIN_DATASET_BYTES: usize = 640 << 10;

/// What an open dataset keeps per block it has read ([`ExtractPlan::dataset_bytes`]): measured
/// with the plain read of 256 px tiled files, 1.6 KiB per block at 1000 px, 2.9 KiB at 3000 px.
pub const DATASET_BYTES_PER_BLOCK: usize = 3 << 10;

/// The smallest record batch limit a worker gets, bytes ([`ExtractPlan::batch_limit`]).
pub const MIN_BATCH_BYTES: usize = 16 << 20;

/// The largest batch a worker assembles, bytes, however large the budget: batches of this size
/// keep every stage busy.
pub const MAX_BATCH_BYTES: usize = 128 << 20;

/// The largest record batch written, decoded bytes ([`treesits_core::chunk::decoded_bytes`]): an
/// assembled batch above it (one 256 px block at 200 dates is 130 MiB) is written as runs of
/// consecutive pixels within it ([`ChunkWriter::write_within`]), so what a reader of the chunks
/// (predict) holds per batch is the same at 50 or 200 dates, on a 1000 or a 3000 px tile.
pub const RECORD_BATCH_BYTES: usize = 64 << 20;

/// What a worker holds per byte of batch, as a fraction: the batch, its compressed form while it is
/// written (at most about as large) and the group of acquisitions being merged (an eighth of its band
/// values): 9/4.
pub const BATCH_OVERHEAD_NUM: usize = 9;
/// See [`BATCH_OVERHEAD_NUM`].
pub const BATCH_OVERHEAD_DEN: usize = 4;

/// Whether `name` is a chunk file of `tile` that a run writing `count` chunks does not write (left by
/// an earlier run with more chunks).
pub fn is_stale_chunk(name: &str, tile: TileId, count: usize) -> bool {
    chunk_index(name, tile).is_some_and(|i| i >= count || name != chunk_file_name(tile, i))
}

/// Columns of written chunks, emptied, waiting to be filled by the next chunk a worker reads: their
/// memory is already paged in, so a chunk costs no fresh allocation (and no page faults) after the
/// first wave. Holds at most one set per chunk in flight.
#[derive(Default)]
struct ColumnPool(std::sync::Mutex<Vec<ChunkColumns>>);

impl ColumnPool {
    fn take(&self) -> ChunkColumns {
        self.0
            .lock()
            .map(|mut p| p.pop().unwrap_or_default())
            .unwrap_or_default()
    }

    fn give(&self, c: ChunkColumns) {
        if let Ok(mut p) = self.0.lock() {
            p.push(c);
        }
    }
}

/// Called once per finished chunk, from the worker that read it: (chunk index, window, counts).
pub type OnChunk<'a> = &'a (dyn Fn(usize, &PixelWindow, &ExtractSummary) + Sync);

impl ExtractPlan {
    pub fn windows(&self) -> Vec<PixelWindow> {
        self.scan.chunk_windows(self.chunk_rows)
    }

    /// Metadata of a chunk (`index`) or of a stream of every chunk (`None`).
    pub fn metadata(&self, index: Option<usize>) -> ChunkMetadata {
        let windows = self.windows();
        let window = match index {
            Some(i) => windows[i],
            None => PixelWindow {
                row: 0,
                col: 0,
                rows: self.scan.size.1,
                cols: self.scan.size.0,
            },
        };
        ChunkMetadata {
            tile_id: self.scan.tile,
            crs_wkt: self.scan.crs_wkt.clone(),
            geotransform: self.scan.geotransform,
            tile_size: self.scan.size,
            window,
            chunk_index: index,
            chunk_count: windows.len(),
            sensors: self.sensors_read(),
            band_names: self.scan.band_names.clone(),
            scale: BOA_SCALE,
            nodata: BOA_NODATA,
            // The dates actually read: the first and last selected acquisition (inside the
            // requested range, which may be open).
            date_start: self.scan.acquisitions.first().map_or(self.start, |a| a.date),
            date_end: self.scan.acquisitions.last().map_or(self.end, |a| a.date),
            qai_screen: self.screen.to_string(),
        }
    }

    /// The sensors of the acquisitions actually read, in the order of the request: what the map is
    /// made from (a requested sensor without files in the window is left out). Codes in the `sensor`
    /// column are [`Sensor::code`], so they stay the same whichever sensors are listed.
    pub fn sensors_read(&self) -> Vec<Sensor> {
        self.sensors
            .iter()
            .copied()
            .filter(|s| self.scan.acquisitions.iter().any(|a| a.sensor == *s))
            .collect()
    }

    /// A bound for GDAL's block cache that costs no re-decoding: every block is decoded once and
    /// copied out at once, so each worker needs the blocks one band read of a chunk touches (twice,
    /// for the QAI or mask read beside it; times the bands of a pixel-interleaved file), at least
    /// 16 MiB in all. GDAL's default (5 % of RAM) lets the cache grow with the tile.
    pub fn gdal_cache_bytes(&self, threads: usize) -> usize {
        let (bw, bh) = (self.scan.block.0.max(1), self.scan.block.1.max(1));
        let block_rows = self.chunk_rows.div_ceil(bh) + 1;
        let blocks_across = self.scan.size.0.div_ceil(bw);
        // A pixel-interleaved block holds every band of its file: all of them are decoded together.
        let per_worker = block_rows * blocks_across * bw * bh * 2 * 2 * self.scan.block_bands.max(1);
        (per_worker * threads.max(1)).max(16 << 20)
    }

    /// Bytes a worker holds for its chunk window whatever its batches: one validity bit per
    /// (acquisition, pixel), the per-pixel counts and selection, the QAI, band and mask windows, and,
    /// for a strip cut into batches, the spill positions of one acquisition.
    pub fn window_state_bytes(&self) -> usize {
        let pixels = self.chunk_rows.min(self.scan.size.1) * self.scan.size.0;
        let acquisitions = self.scan.acquisitions.len();
        pixels * (acquisitions.div_ceil(8) + 4 + 4 + 2 + 2 * self.scan.block_bands.max(1) + 1 + 4)
    }

    /// Bytes an open Level-2 dataset holds, the mean of an acquisition's BOA and QAI: libtiff's
    /// buffer for one compressed block (at most the block's raw size: 1.7 MiB for a strip of a
    /// 3000 px FORCE 3.7 tile) and its decoder's state (ZSTD's is about half a MiB per file), at
    /// least [`MIN_DATASET_BYTES`]; and [`DATASET_BYTES_PER_BLOCK`] for every block it has read,
    /// which GDAL keeps while the dataset is open (so a file kept open for the whole tile ends up
    /// holding a part that grows with the tile: 2.5 MiB per file at 3000 px with 256 px tiles, 0.4
    /// MiB at 1000 px; measured with the plain read's RSS at 8 and at 204 open files).
    fn dataset_bytes(&self) -> usize {
        let (bw, bh) = (self.scan.block.0.max(1), self.scan.block.1.max(1));
        let fixed = (bw * bh * 2 * self.scan.block_bands.max(1)).max(MIN_DATASET_BYTES);
        let blocks = self.scan.size.0.div_ceil(bw) * self.scan.size.1.div_ceil(bh);
        // A band-interleaved BOA has a block per band read; a pixel-interleaved one reads all its
        // bands with each block. The QAI has one band.
        let boa_blocks = if self.scan.block_bands > 1 {
            blocks
        } else {
            blocks * self.scan.bands.max(1)
        };
        fixed + DATASET_BYTES_PER_BLOCK * (boa_blocks + blocks) / 2
    }

    /// Acquisitions (BOA and QAI) each of `threads` workers keeps open between chunks: its share of
    /// `--max-open-files`, and no more than an eighth of its share of the budget holds; the others
    /// are reopened for every chunk.
    pub fn keep_open(&self, threads: usize) -> usize {
        let by_files = ChunkReader::keep_open_per_worker(self.max_open_datasets, threads);
        let by_memory = self.memory.per(threads) as usize / 8 / (2 * self.dataset_bytes());
        by_files.min(by_memory)
    }

    /// Bytes per worker beyond its batches: the window state, its share of GDAL's block cache, the
    /// files it keeps open and those of a group being merged (open together).
    fn worker_fixed_bytes(&self, threads: usize) -> usize {
        let open = 2 * self.keep_open(threads) + crate::scan::MAX_GROUP;
        self.window_state_bytes()
            + self.gdal_cache_bytes(threads) / threads.max(1)
            + open * self.dataset_bytes()
    }

    /// How many of `threads` workers the memory budget lets run at once: as many as leave each at
    /// least [`MIN_BATCH_BYTES`] of batch (times [`BATCH_OVERHEAD_NUM`] / [`BATCH_OVERHEAD_DEN`]) beside its fixed part; at
    /// least one.
    pub fn workers(&self, threads: usize) -> usize {
        let budget = self.memory.bytes as usize;
        (1..=threads.max(1))
            .rev()
            .find(|&t| {
                budget / t
                    >= self.worker_fixed_bytes(t) + MIN_BATCH_BYTES * BATCH_OVERHEAD_NUM / BATCH_OVERHEAD_DEN
            })
            .unwrap_or(1)
    }

    /// The most bytes of one batch a worker assembles ([`crate::split::batch_bytes`]; `--batch-bytes`,
    /// else from the budget) for `threads` workers: a worker's share of the budget less its fixed part, divided by [`BATCH_OVERHEAD_NUM`] / [`BATCH_OVERHEAD_DEN`] (the batch,
    /// its compressed form while it is written, the group being merged); at least
    /// [`MIN_BATCH_BYTES`], at most [`MAX_BATCH_BYTES`].
    pub fn batch_limit(&self, threads: usize) -> usize {
        match self.batch_bytes {
            Some(fixed) => fixed.max(1),
            None => self.budget_batch_limit(threads),
        }
    }

    /// [`ExtractPlan::batch_limit`] from the budget alone.
    fn budget_batch_limit(&self, threads: usize) -> usize {
        let share = self.memory.per(threads) as usize;
        (share.saturating_sub(self.worker_fixed_bytes(threads)) * BATCH_OVERHEAD_DEN / BATCH_OVERHEAD_NUM)
            .clamp(MIN_BATCH_BYTES, MAX_BATCH_BYTES)
    }

    /// The most decoded bytes of one record batch written to `--out-dir`: the budget's batch limit,
    /// at most [`RECORD_BATCH_BYTES`] (`--batch-bytes` sets how batches are assembled, not this).
    pub fn record_limit(&self, threads: usize) -> usize {
        self.budget_batch_limit(threads).min(RECORD_BATCH_BYTES)
    }

    /// The memory plan in words for the log.
    pub fn memory_words(&self, threads: usize) -> String {
        format!(
            "memory budget {}: {threads} workers, each with batches of at most {} (written as record batches of at most {}) beside {} for its window of {} rows, {} of GDAL block cache and the files of {} of {} acquisitions kept open ({} each)",
            self.memory,
            human_bytes(self.batch_limit(threads) as u64),
            human_bytes(self.record_limit(threads) as u64),
            human_bytes(self.window_state_bytes() as u64),
            self.chunk_rows.min(self.scan.size.1),
            human_bytes((self.gdal_cache_bytes(threads) / threads.max(1)) as u64),
            self.keep_open(threads).min(self.scan.acquisitions.len()),
            self.scan.acquisitions.len(),
            human_bytes(self.dataset_bytes() as u64),
        )
    }

    /// A worker's reader; with `spill_dir`, one that cuts chunks into batches of at most
    /// [`ExtractPlan::batch_limit`] (strips spilling there), else one batch per chunk.
    fn reader(&self, mask: bool, spill_dir: Option<&Path>) -> ChunkReader<'_> {
        let threads = rayon::current_num_threads();
        let keep_open = self.keep_open(threads);
        ChunkReader::new(
            &self.scan,
            &self.screen,
            self.mask.as_ref().filter(|_| mask),
            keep_open,
        )
        .with_group_bytes(self.group_bytes)
        .with_batch_limit(
            spill_dir.map(|_| self.batch_limit(threads)),
            spill_dir.unwrap_or(Path::new(".")),
        )
    }

    /// Writes one file per chunk into `dir` (created if needed); all or nothing. Chunk files of this
    /// tile from an earlier run that this run does not write are removed when the new ones are moved
    /// into place (after every chunk succeeded); other files in `dir` are left alone.
    pub fn write_dir(
        &self,
        dir: &Path,
        on_chunk: OnChunk<'_>,
    ) -> Result<(Vec<PathBuf>, ExtractSummary), ExtractError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ExtractError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let windows = self.windows();
        let tile = self.scan.tile;
        // One run per tile and directory at a time; holding the lock, what killed runs of this tile
        // left (hidden temporary chunks) is theirs to lose.
        let lock_path = dir.join(format!(".{tile}.lock"));
        let _lock =
            OutputLock::acquire(&lock_path, &dir.join(format!("{tile}_chunk*"))).map_err(|source| {
                match source.kind() {
                    std::io::ErrorKind::WouldBlock => ExtractError::Locked { source },
                    _ => io(dir)(source),
                }
            })?;
        for p in remove_partials(dir, |t| chunk_index(t, tile).is_some()).map_err(io(dir))? {
            log::info!("{tile}: removed {} (left by a killed run)", p.display());
        }
        // Each worker keeps its reader (its own datasets and buffers) across the chunks it is given;
        // the columns of a written chunk go back to the pool for the next one.
        let pool = ColumnPool::default();
        let record_limit = self.record_limit(rayon::current_num_threads());
        let written = windows
            .par_iter()
            .enumerate()
            .map_init(
                || self.reader(true, Some(dir)),
                |reader, (i, w)| -> Result<(AtomicPath, ExtractSummary), ExtractError> {
                    let out = AtomicPath::new(dir.join(chunk_file_name(tile, i)));
                    let file = std::fs::File::create(out.temp()).map_err(io(out.target()))?;
                    let chunk = |source| ExtractError::Chunk {
                        path: out.target().display().to_string(),
                        source,
                    };
                    let buf = std::io::BufWriter::with_capacity(1 << 20, file);
                    let mut writer =
                        ChunkWriter::with_zstd_level(buf, &self.metadata(Some(i)), self.zstd_level)
                            .map_err(chunk)?;
                    let mut s = ExtractSummary {
                        chunks: 1,
                        ..Default::default()
                    };
                    // Each batch is written as soon as it is read (as record batches within the
                    // record limit); its columns come back for the next.
                    let spare = reader.read_batches(w, pool.take(), &mut |columns| {
                        s.add_batch(&columns);
                        writer.write_within(columns, record_limit).map_err(chunk)
                    })?;
                    pool.give(spare);
                    writer
                        .finish()
                        .map_err(chunk)?
                        .flush()
                        .map_err(io(out.target()))?;
                    on_chunk(i, w, &s);
                    Ok((out, s))
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        // Only now, with every chunk complete, do the files get their real names. Every chunk of
        // this tile from an earlier run goes first: a run killed while renaming leaves chunks
        // missing, which readers detect (the chunk count in each chunk), never a set mixing two runs.
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| chunk_index(n, tile).is_some()) {
                if name
                    .to_str()
                    .is_some_and(|n| is_stale_chunk(n, tile, written.len()))
                {
                    log::info!("{tile}: removing {} from an earlier run", entry.path().display());
                }
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        let mut paths = Vec::with_capacity(written.len());
        let mut total = ExtractSummary::default();
        for (out, s) in written {
            let target = out.target().to_path_buf();
            paths.push(out.commit().map_err(io(&target))?);
            abort_point("extract-rename");
            total.merge(&s);
        }
        Ok((paths, total))
    }

    /// Writes every chunk, in row order, as one stream (one record batch per chunk).
    pub fn write_stream<W: Write>(
        &self,
        out: W,
        name: &str,
        on_chunk: OnChunk<'_>,
    ) -> Result<ExtractSummary, ExtractError> {
        let windows = self.windows();
        let chunk = |source| ExtractError::Chunk {
            path: name.to_string(),
            source,
        };
        let mut writer =
            ChunkWriter::with_zstd_level(out, &self.metadata(None), self.zstd_level).map_err(chunk)?;
        let mut total = ExtractSummary::default();
        let wave = rayon::current_num_threads().max(1);
        let pool = ColumnPool::default();
        for (g, group) in windows.chunks(wave).enumerate() {
            // One batch per chunk, row-major, as a whole-tile stream has always been (readers count
            // its batches as chunks): the batch limit applies to --out-dir only.
            let chunks = group
                .par_iter()
                .enumerate()
                .map_init(
                    || self.reader(true, None),
                    |reader, (j, w)| -> Result<Vec<ChunkColumns>, ExtractError> {
                        let mut batches = Vec::new();
                        let mut s = ExtractSummary {
                            chunks: 1,
                            ..Default::default()
                        };
                        let spare =
                            reader.read_batches(w, pool.take(), &mut |c| -> Result<_, ExtractError> {
                                s.add_batch(&c);
                                batches.push(c);
                                Ok(pool.take())
                            })?;
                        pool.give(spare);
                        on_chunk(g * wave + j, w, &s);
                        Ok(batches)
                    },
                )
                .collect::<Result<Vec<_>, _>>()?;
            for batches in chunks {
                total.chunks += 1;
                for c in batches {
                    total.add_batch(&c);
                    pool.give(writer.write_recycling(c).map_err(chunk)?);
                }
            }
        }
        let mut out = writer.finish().map_err(chunk)?;
        out.flush().map_err(|source| ExtractError::Io {
            path: name.to_string(),
            source,
        })?;
        Ok(total)
    }

    /// Benchmark baseline: reads every BOA and QAI block of the same windows with the same workers
    /// and the same reads (reused buffers, same handles), doing nothing with the values but a
    /// checksum. Returns the number of values read.
    pub fn plain_read(&self) -> Result<u64, ExtractError> {
        let counts = self
            .windows()
            .par_iter()
            .map_init(|| self.reader(false, None), |reader, w| reader.read_all_bands(w))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(counts.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_chunks_are_this_tiles_chunks_beyond_the_new_count() {
        let t: TileId = "X0058_Y0056".parse().unwrap();
        assert!(!is_stale_chunk("X0058_Y0056_chunk0009.arrows", t, 10));
        assert!(is_stale_chunk("X0058_Y0056_chunk0010.arrows", t, 10));
        assert!(is_stale_chunk("X0058_Y0056_chunk12345.arrows", t, 10));
        assert!(!is_stale_chunk("X0058_Y0056_chunk0000.arrows", t, 1));
        assert!(
            is_stale_chunk("X0058_Y0056_chunk00003.arrows", t, 10),
            "not a name we write"
        );
        assert!(is_stale_chunk("X0058_Y0056_chunk0000.arrows", t, 0));
        // Other tiles, temporary files, other names: never.
        assert!(!is_stale_chunk("X0058_Y0057_chunk0010.arrows", t, 10));
        assert!(!is_stale_chunk(".X0058_Y0056_chunk0010.partial-7.arrows", t, 10));
        assert!(!is_stale_chunk("X0058_Y0056_chunk10.arrows", t, 10));
        assert!(!is_stale_chunk("X0058_Y0056_chunk0010.arrows.bak", t, 10));
        assert!(!is_stale_chunk("X0058_Y0056_chunkabcd.arrows", t, 10));
        assert!(!is_stale_chunk("notes.txt", t, 0));
    }
}
