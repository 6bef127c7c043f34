//! Prediction chunks made from a synthetic cube's truth, as `predict` would write them with a perfect
//! model: the test input of `mosaic` (and a reference for `predict`'s own output format).
//!
//! Deterministic per pixel (a hash of seed and global pixel position, so any chunking gives the same
//! values):
//! - non-forest pixels (truth class 10) are outside the mask: they never appear in a chunk;
//! - about 2 % of the forest pixels appear without observations (class 255, probabilities 65535);
//! - every other pixel gets its true species, a top probability between 0.35 and 0.95 and the rest
//!   of the probability spread unevenly over the other classes.

use std::io::Write;
use std::path::{Path, PathBuf};

use treesits_core::chunk::ChunkMetadata;
use treesits_core::level2::{BOA_NODATA, BOA_SCALE};
use treesits_core::prediction::{
    scale_prob, PredictionColumns, PredictionMetadata, PredictionWriter, Uncertainty, PROB_NODATA,
};
use treesits_core::species::{tree_species, CLASS_NODATA, NON_FOREST};
use treesits_core::{Date, PixelWindow, Sensor, TileGrid, TileId};

use crate::generate::{tile_truth, SynthConfig};
use crate::noise::{hash, mix, unit};
use crate::scene::Scene;

/// What the fake model writes.
#[derive(Debug, Clone)]
pub struct PredictionSpec {
    /// Tile rows per chunk (the last chunk may be shorter).
    pub chunk_rows: usize,
    /// Write the per-class `probabilities` column.
    pub probabilities: bool,
    /// Write an `uncertainty` column of this kind.
    pub uncertainty: Option<Uncertainty>,
    pub model_id: String,
}

impl Default for PredictionSpec {
    fn default() -> Self {
        PredictionSpec {
            chunk_rows: 64,
            probabilities: true,
            uncertainty: Some(Uncertainty::Margin),
            model_id: "synthetic-truth".into(),
        }
    }
}

/// One tile's predictions: the chunks and the rasters a map of them must equal.
#[derive(Debug, Clone)]
pub struct TilePredictions {
    pub tile: TileId,
    /// The metadata of chunk `i` is `chunk_metadata(i)`; this is the one of chunk 0.
    pub meta: PredictionMetadata,
    pub windows: Vec<PixelWindow>,
    pub chunks: Vec<PredictionColumns>,
    /// Expected class raster (row-major, [`CLASS_NODATA`] where no class was predicted).
    pub class: Vec<u8>,
    /// Expected top-probability raster ([`PROB_NODATA`] where none).
    pub prob: Vec<u16>,
}

impl TilePredictions {
    /// Metadata of chunk `index`, or of a stream of every chunk (`None`).
    pub fn chunk_metadata(&self, index: Option<usize>) -> PredictionMetadata {
        let mut m = self.meta.clone();
        m.source.chunk_index = index;
        m.source.window = match index {
            Some(i) => self.windows[i],
            None => PixelWindow {
                row: 0,
                col: 0,
                rows: m.source.tile_size.1,
                cols: m.source.tile_size.0,
            },
        };
        m
    }

    /// The predictions mosaic must place at (row, col): class and top probability.
    pub fn at(&self, row: usize, col: usize) -> (u8, u16) {
        let i = row * self.meta.source.tile_size.0 + col;
        (self.class[i], self.prob[i])
    }

    /// Writes one file per chunk, `<tile>_chunkNNNN.pred.arrows`, as `predict --out-dir` does.
    pub fn write_chunk_files(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut paths = Vec::new();
        for (i, c) in self.chunks.iter().enumerate() {
            let path = dir.join(chunk_file_name(self.tile, i));
            let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let mut w = PredictionWriter::new(file, &self.chunk_metadata(Some(i))).map_err(io_err)?;
            w.write(c).map_err(io_err)?;
            w.finish().map_err(io_err)?.flush()?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Writes every chunk as one stream (one batch per chunk), as `predict --out -` does.
    pub fn write_stream<W: Write>(&self, out: W) -> std::io::Result<W> {
        let mut w = PredictionWriter::new(out, &self.chunk_metadata(None)).map_err(io_err)?;
        for c in &self.chunks {
            w.write(c).map_err(io_err)?;
        }
        w.finish().map_err(io_err)
    }
}

fn io_err(e: treesits_core::chunk::ChunkError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// File name of a prediction chunk.
pub fn chunk_file_name(tile: TileId, index: usize) -> String {
    format!("{tile}_chunk{index:04}.pred.arrows")
}

/// The prediction of one pixel: `None` outside the mask, else (class, prob, probabilities).
fn pixel(seed: u64, gx: i64, gy: i64, truth: u8, classes: usize) -> Option<(u8, u16, Vec<f32>)> {
    if truth == NON_FOREST {
        return None;
    }
    let h = hash(seed, 0x9ed1c7, gx as u64, gy as u64);
    if unit(h) < 0.02 {
        return Some((CLASS_NODATA, PROB_NODATA, Vec::new()));
    }
    let top = 0.35 + 0.6 * unit(mix(h)) as f32;
    let weights: Vec<f32> = (0..classes)
        .map(|k| 1.0 + unit(hash(h, 0x77, k as u64, 0)) as f32)
        .collect();
    let others: f32 = weights
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != usize::from(truth))
        .map(|(_, w)| w)
        .sum();
    let p: Vec<f32> = weights
        .iter()
        .enumerate()
        .map(|(k, w)| {
            if k == usize::from(truth) {
                top
            } else {
                (1.0 - top) * w / others
            }
        })
        .collect();
    Some((truth, scale_prob(top), p))
}

/// The predictions of one tile of the synthetic cube `cfg` describes (the cube itself need not exist).
pub fn tile_predictions(cfg: &SynthConfig, tile: TileId, spec: &PredictionSpec) -> TilePredictions {
    let def = cfg.cube_definition();
    let grid = TileGrid::new(def.clone(), cfg.resolution).expect("synthetic grid is valid");
    let scene = Scene {
        seed: cfg.seed,
        acquisitions: Vec::new(),
    };
    let truth = tile_truth(&scene, &grid, tile);
    let (cols, rows) = grid.tile_pixels;
    let classes = tree_species();
    let k = classes.len();
    let windows: Vec<PixelWindow> = grid.row_blocks(spec.chunk_rows).collect();
    let meta = PredictionMetadata {
        source: ChunkMetadata {
            tile_id: tile,
            crs_wkt: def.projection_wkt.clone(),
            geotransform: grid.geotransform(tile),
            tile_size: (cols, rows),
            window: windows[0],
            chunk_index: Some(0),
            chunk_count: windows.len(),
            sensors: cfg.sensors.clone(),
            band_names: Sensor::Sen2a.bands().iter().map(|b| b.to_string()).collect(),
            scale: BOA_SCALE,
            nodata: BOA_NODATA,
            date_start: Date::new(cfg.year, 1, 1).expect("valid date"),
            date_end: Date::new(cfg.year, 12, 31).expect("valid date"),
            qai_screen: "nodata,cloud,shadow,snow,subzero,saturation".into(),
        },
        model_id: spec.model_id.clone(),
        // No model file: the SHA-256 of the model id stands in for it.
        model_sha256: Some(treesits_core::inventory::sha256_hex(spec.model_id.as_bytes())),
        model_file: Some(format!("{}.onnx", spec.model_id)),
        model_contract: None,
        classes,
        probabilities: spec.probabilities,
        uncertainty: spec.uncertainty,
    };
    let mut class = vec![CLASS_NODATA; cols * rows];
    let mut prob = vec![PROB_NODATA; cols * rows];
    let (gx0, gy0) = (i64::from(tile.x) * cols as i64, i64::from(tile.y) * rows as i64);
    let mut chunks = Vec::with_capacity(windows.len());
    for w in &windows {
        let mut c = PredictionColumns {
            probabilities: spec.probabilities.then(Vec::new),
            uncertainty: spec.uncertainty.map(|_| Vec::new()),
            ..Default::default()
        };
        for row in w.row..w.row + w.rows {
            for col in 0..cols {
                let i = row * cols + col;
                let Some((cl, pr, p)) = pixel(cfg.seed, gx0 + col as i64, gy0 + row as i64, truth[i], k)
                else {
                    continue;
                };
                if cl == CLASS_NODATA {
                    c.push_nodata(row as u32, col as u32, k);
                    continue;
                }
                c.row.push(row as u32);
                c.col.push(col as u32);
                c.class.push(cl);
                c.prob.push(pr);
                if let Some(v) = &mut c.probabilities {
                    v.extend(p.iter().map(|&x| scale_prob(x)));
                }
                if let (Some(v), Some(u)) = (&mut c.uncertainty, spec.uncertainty) {
                    v.push(scale_prob(u.of(&p)));
                }
                class[i] = cl;
                prob[i] = pr;
            }
        }
        chunks.push(c);
    }
    TilePredictions {
        tile,
        meta,
        windows,
        chunks,
        class,
        prob,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::prediction::PredictionReader;

    #[test]
    fn predictions_follow_the_truth_and_round_trip_through_files() {
        let cfg = SynthConfig {
            tiles: 1,
            tile_pixels: 40,
            ..Default::default()
        };
        let tile = cfg.tile_ids()[0];
        let spec = PredictionSpec {
            chunk_rows: 16,
            ..Default::default()
        };
        let p = tile_predictions(&cfg, tile, &spec);
        assert_eq!(p.windows.len(), 3);
        assert_eq!(p.windows[2].rows, 8);
        let grid = TileGrid::new(cfg.cube_definition(), cfg.resolution).unwrap();
        let truth = tile_truth(
            &Scene {
                seed: cfg.seed,
                acquisitions: vec![],
            },
            &grid,
            tile,
        );
        let mut absent = 0;
        let mut no_obs = 0;
        for (i, t) in truth.iter().enumerate() {
            match (p.class[i], *t) {
                (CLASS_NODATA, NON_FOREST) => absent += 1,
                (CLASS_NODATA, _) => no_obs += 1,
                (c, t) => {
                    assert_eq!(c, t);
                    assert!((3500..=9500).contains(&p.prob[i]));
                }
            }
        }
        assert!(
            absent > 0 && no_obs > 0,
            "absent {absent}, without observations {no_obs}"
        );

        let dir = tempfile::tempdir().unwrap();
        let paths = p.write_chunk_files(dir.path()).unwrap();
        assert_eq!(paths.len(), 3);
        let r = PredictionReader::new(std::fs::File::open(&paths[1]).unwrap()).unwrap();
        assert_eq!(r.metadata().source.chunk_index, Some(1));
        assert_eq!(r.metadata().source.window.row, 16);
        let back: Vec<_> = r.map(|c| c.unwrap()).collect();
        assert_eq!(back, vec![p.chunks[1].clone()]);
        let c = &back[0];
        let probs = c.probabilities.as_ref().unwrap();
        for i in 0..c.pixels() {
            if c.class[i] == CLASS_NODATA {
                continue;
            }
            let row = &probs[i * 10..(i + 1) * 10];
            let top = row.iter().enumerate().max_by_key(|(_, v)| **v).unwrap().0;
            assert_eq!(top, usize::from(c.class[i]));
            assert_eq!(row[top], c.prob[i]);
        }
    }
}
