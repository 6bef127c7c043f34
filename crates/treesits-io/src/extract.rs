//! Extraction of a tile into time-series chunks, in parallel, one GDAL handle set per worker.
//!
//! With an output directory, every chunk is written under a temporary name and renamed into place only
//! after all chunks succeeded, so a failed or killed run leaves no file that looks complete. On a
//! stream (stdout), chunks are read in waves of one per worker and written in row order.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use treesits_core::chunk::{ChunkColumns, ChunkError, ChunkMetadata, ChunkWriter};
use treesits_core::level2::{BOA_NODATA, BOA_SCALE};
use treesits_core::{Date, PixelWindow, QaiScreen, Sensor};

use crate::cube::{ChunkReader, CubeError, TileScan};
use crate::{AtomicPath, Location};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error("writing {path}")]
    Chunk { path: String, source: ChunkError },
    #[error("writing {path}")]
    Io { path: String, source: std::io::Error },
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
    fn add(&mut self, c: &ChunkColumns) {
        self.chunks += 1;
        self.pixels += c.pixels();
        self.empty_pixels += (0..c.pixels()).filter(|&i| c.range(i).is_empty()).count();
        self.observations += c.observations();
    }
}

/// File name of chunk `index` of a tile.
pub fn chunk_file_name(tile: &str, index: usize) -> String {
    format!("{tile}_chunk{index:04}.arrows")
}

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
            sensors: self.sensors.clone(),
            band_names: self.scan.band_names.clone(),
            scale: BOA_SCALE,
            nodata: BOA_NODATA,
            date_start: self.start,
            date_end: self.end,
            qai_screen: self.screen.to_string(),
        }
    }

    /// Writes one file per chunk into `dir` (created if needed); all or nothing.
    pub fn write_dir(&self, dir: &Path) -> Result<(Vec<PathBuf>, ExtractSummary), ExtractError> {
        std::fs::create_dir_all(dir).map_err(|source| ExtractError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let windows = self.windows();
        let progress = Progress::new(self, windows.len());
        let tile = self.scan.tile.to_string();
        // Each worker keeps its reader (its own datasets) across the chunks it is given.
        let written = windows
            .par_iter()
            .enumerate()
            .map_init(
                || ChunkReader::new(&self.scan, &self.screen, self.mask.as_ref()),
                |reader, (i, w)| -> Result<(AtomicPath, ExtractSummary), ExtractError> {
                    let columns = reader.read(w)?;
                    let out = AtomicPath::new(dir.join(chunk_file_name(&tile, i)));
                    let path = out.target().display().to_string();
                    let file = std::fs::File::create(out.temp()).map_err(|source| ExtractError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    let chunk = |source| ExtractError::Chunk {
                        path: path.clone(),
                        source,
                    };
                    let mut writer = ChunkWriter::new(std::io::BufWriter::new(file), &self.metadata(Some(i)))
                        .map_err(chunk)?;
                    writer.write(&columns).map_err(chunk)?;
                    let mut buf = writer.finish().map_err(chunk)?;
                    buf.flush().map_err(|source| ExtractError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    let mut s = ExtractSummary::default();
                    s.add(&columns);
                    progress.done(w, &s);
                    Ok((out, s))
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        // Only now, with every chunk complete, do the files get their real names.
        let mut paths = Vec::with_capacity(written.len());
        let mut total = ExtractSummary::default();
        for (out, s) in written {
            let target = out.target().display().to_string();
            paths.push(
                out.commit()
                    .map_err(|source| ExtractError::Io { path: target, source })?,
            );
            total.chunks += s.chunks;
            total.pixels += s.pixels;
            total.empty_pixels += s.empty_pixels;
            total.observations += s.observations;
        }
        Ok((paths, total))
    }

    /// Writes every chunk, in row order, as one stream (one record batch per chunk).
    pub fn write_stream<W: Write>(&self, out: W, name: &str) -> Result<ExtractSummary, ExtractError> {
        let windows = self.windows();
        let progress = Progress::new(self, windows.len());
        let chunk = |source| ExtractError::Chunk {
            path: name.to_string(),
            source,
        };
        let mut writer = ChunkWriter::new(out, &self.metadata(None)).map_err(chunk)?;
        let mut total = ExtractSummary::default();
        let wave = rayon::current_num_threads().max(1);
        for group in windows.chunks(wave) {
            let columns = group
                .par_iter()
                .map_init(
                    || ChunkReader::new(&self.scan, &self.screen, self.mask.as_ref()),
                    |reader, w| -> Result<ChunkColumns, ExtractError> {
                        let c = reader.read(w)?;
                        let mut s = ExtractSummary::default();
                        s.add(&c);
                        progress.done(w, &s);
                        Ok(c)
                    },
                )
                .collect::<Result<Vec<_>, _>>()?;
            for c in &columns {
                writer.write(c).map_err(chunk)?;
                total.add(c);
            }
        }
        let mut out = writer.finish().map_err(chunk)?;
        out.flush().map_err(|source| ExtractError::Io {
            path: name.to_string(),
            source,
        })?;
        Ok(total)
    }
}

/// Periodic progress lines on stderr (about ten per tile, and at least every few seconds).
struct Progress {
    tile: String,
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last_log_ms: AtomicUsize,
}

impl Progress {
    fn new(plan: &ExtractPlan, total: usize) -> Progress {
        log::info!(
            "{}: {} acquisitions, {} chunks of {} rows, {} x {} pixels",
            plan.scan.tile,
            plan.scan.acquisitions.len(),
            total,
            plan.chunk_rows,
            plan.scan.size.0,
            plan.scan.size.1
        );
        Progress {
            tile: plan.scan.tile.to_string(),
            total,
            done: AtomicUsize::new(0),
            started: Instant::now(),
            last_log_ms: AtomicUsize::new(0),
        }
    }

    fn done(&self, w: &PixelWindow, s: &ExtractSummary) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let ms = self.started.elapsed().as_millis() as usize;
        let step = self.total.div_ceil(10).max(1);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if done == self.total || done % step == 0 || ms.saturating_sub(last) > 5000 {
            self.last_log_ms.store(ms, Ordering::Relaxed);
            log::info!(
                "{}: chunk {done}/{} done (rows {}..{}: {} pixels, {} observations), {:.1} s",
                self.tile,
                self.total,
                w.row,
                w.row + w.rows,
                s.pixels,
                s.observations,
                ms as f64 / 1000.0
            );
        }
    }
}

impl ExtractPlan {
    /// Benchmark baseline: reads every BOA and QAI block of the same windows with the same workers,
    /// doing nothing with the values but a checksum. Returns the number of values read.
    pub fn plain_read(&self) -> Result<u64, ExtractError> {
        let windows = self.windows();
        let scan = &self.scan;
        let counts = windows
            .par_iter()
            .map_init(
                || ChunkReader::new(scan, &self.screen, None),
                |reader, w| reader.read_all_bands(w),
            )
            .collect::<Result<Vec<_>, _>>()?;
        Ok(counts.iter().sum())
    }
}
