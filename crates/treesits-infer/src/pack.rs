//! Packing a chunk's observations into model tensors, exactly as the model contract says.
//!
//! For every pixel with observations: the contract's bands (in the contract's order, looked up by
//! name in the chunk), scaled `((raw · scale + offset) − mean) / std`, thinned to `max_length` by the
//! contract's long-series rule, padded on the contract's side with `pad_value`; day of year (0 where
//! padded) and a mask when the model takes them.
//!
//! Pixels are *bucketed by length*: sorted by their number of (selected) observations (stably, so ties
//! keep the chunk's order) and cut into batches of consecutive pixels. Unless the contract says the
//! model ignores padding (`sequence.ignores_padding`), a batch holds series of **one length only**, so
//! no padding reaches the model and a pixel's answer cannot depend on its batch-mates, the batch size
//! or the thread count (a bidirectional LSTM's backward direction would otherwise read the padding).
//! A model that ignores padding gets batches padded to their own longest series; a model with a fixed
//! sequence length always gets exactly that length.

use treesits_core::chunk::{ChunkColumns, ChunkMetadata};
use treesits_core::contract::{ContractError, ModelContract, PaddingSide};
use treesits_core::Date;

/// Why a chunk stream cannot be packed for a model.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The chunk lacks a band the model needs.
    #[error(transparent)]
    Bands(#[from] ContractError),
    #[error("the model's input '{input}' has a fixed sequence length of {fixed} but the contract's 'sequence.max_length' is {}: set max_length to at most {fixed}", max_length.map_or("null".to_string(), |m| m.to_string()))]
    FixedLength {
        input: String,
        fixed: usize,
        max_length: Option<usize>,
    },
}

/// How the observations of one chunk stream become tensors (built once per input stream).
#[derive(Debug, Clone)]
pub struct Packer {
    contract: ModelContract,
    /// For each contract band, its column among the chunk's bands.
    band_columns: Vec<usize>,
    /// x = raw · gain[b] + bias[b]
    gain: Vec<f64>,
    bias: Vec<f64>,
    /// The model's fixed sequence length, when its input shape has one.
    fixed_length: Option<usize>,
    with_doy: bool,
    with_mask: bool,
}

/// One batch of pixels of one chunk, ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Index of each pixel in its chunk (rows of the batch in this order).
    pub pixels: Vec<u32>,
    /// Sequence length `T` of every tensor of this batch.
    pub length: usize,
    /// Number of contract bands.
    pub bands: usize,
    /// `[pixels, length, bands]`, row-major.
    pub values: Vec<f32>,
    /// `[pixels, length]` day of year (1..=366; 0 where padded), when the model takes it.
    pub doy: Option<Vec<i64>>,
    /// `[pixels, length]` true for an observation, false for padding, when the model takes it.
    pub mask: Option<Vec<bool>>,
    /// Observations that entered the batch (not counting padding).
    pub observations: usize,
}

/// A chunk packed into batches; pixels without observations are in no batch.
#[derive(Debug, Clone, Default)]
pub struct PackedChunk {
    pub batches: Vec<Batch>,
    /// Pixels of the chunk, with and without observations.
    pub pixels: usize,
    /// Pixels with `n_obs = 0` (written as nodata).
    pub empty_pixels: usize,
    /// Observations in the chunk (before thinning long series).
    pub observations: usize,
}

impl PackedChunk {
    /// Tensor positions (pixels × steps) of all batches, padding included.
    pub fn positions(&self) -> usize {
        self.batches.iter().map(|b| b.pixels.len() * b.length).sum()
    }
}

impl Packer {
    /// Checks the chunk against the contract (bands by name, sensors if it lists them) and prepares
    /// the scaling.
    /// `fixed_length` is the model's static sequence length, if its input has one.
    pub fn new(
        contract: &ModelContract,
        chunk: &ChunkMetadata,
        fixed_length: Option<usize>,
    ) -> Result<Packer, PackError> {
        contract.check_sensors(&chunk.sensors)?;
        let band_columns = contract.band_indices(&chunk.band_names)?;
        let (mean, std) = contract.normalisation();
        let s = &contract.scaling;
        let gain = std.iter().map(|sd| s.scale / sd).collect();
        let bias = mean.iter().zip(&std).map(|(m, sd)| (s.offset - m) / sd).collect();
        if let (Some(fixed), max) = (fixed_length, contract.sequence.max_length) {
            if max.is_none_or(|m| m > fixed) {
                return Err(PackError::FixedLength {
                    input: contract.inputs.values.clone(),
                    fixed,
                    max_length: max,
                });
            }
        }
        Ok(Packer {
            contract: contract.clone(),
            band_columns,
            gain,
            bias,
            fixed_length,
            with_doy: contract.inputs.doy.is_some(),
            with_mask: contract.inputs.mask.is_some(),
        })
    }

    /// Packs one chunk into batches of at most `batch_size` pixels, bucketed by series length.
    pub fn pack(&self, chunk: &ChunkColumns, batch_size: usize) -> PackedChunk {
        let batch_size = batch_size.max(1);
        let n = chunk.pixels();
        // (selected length, pixel) for pixels with observations, sorted by length (stable: ties keep
        // the chunk's order, so results never depend on how pixels are grouped).
        let mut order: Vec<(usize, u32)> = (0..n)
            .filter_map(|i| {
                let obs = chunk.range(i).len();
                (obs > 0).then(|| (self.selected_len(obs), i as u32))
            })
            .collect();
        order.sort_by_key(|&(len, _)| len);
        let batches = if self.pads_within_batch() {
            order
                .chunks(batch_size)
                .map(|group| self.pack_batch(chunk, group))
                .collect()
        } else {
            // One length per batch: no series is padded, so what a pixel's series looks like to the
            // model never depends on the other pixels of its batch (or on the batch size).
            order
                .chunk_by(|a, b| a.0 == b.0)
                .flat_map(|same| same.chunks(batch_size))
                .map(|group| self.pack_batch(chunk, group))
                .collect()
        };
        PackedChunk {
            batches,
            pixels: n,
            empty_pixels: n - order.len(),
            observations: chunk.observations(),
        }
    }

    /// Whether series of different lengths may share a batch, padded to its longest: only for a
    /// model whose contract says it ignores padding, or one with a fixed sequence length (every
    /// series then gets exactly that length whatever its batch).
    pub fn pads_within_batch(&self) -> bool {
        self.fixed_length.is_some() || self.contract.sequence.ignores_padding
    }

    fn selected_len(&self, n: usize) -> usize {
        self.contract.sequence.max_length.map_or(n, |m| n.min(m))
    }

    fn pack_batch(&self, chunk: &ChunkColumns, group: &[(usize, u32)]) -> Batch {
        let longest = group.iter().map(|g| g.0).max().unwrap_or(0);
        let length = self.fixed_length.unwrap_or(longest);
        let bands = self.band_columns.len();
        let pad = self.contract.sequence.pad_value;
        let mut values = vec![pad; group.len() * length * bands];
        let mut doy = self.with_doy.then(|| vec![0i64; group.len() * length]);
        let mut mask = self.with_mask.then(|| vec![false; group.len() * length]);
        let mut observations = 0;
        for (row, &(len, pixel)) in group.iter().enumerate() {
            let range = chunk.range(pixel as usize);
            let selected = self.contract.select_observations(range.len());
            debug_assert_eq!(selected.len(), len);
            let first_step = match self.contract.sequence.padding {
                PaddingSide::Left => length - len,
                PaddingSide::Right => 0,
            };
            for (k, &s) in selected.iter().enumerate() {
                let obs = range.start + s;
                let step = row * length + first_step + k;
                let out = &mut values[step * bands..(step + 1) * bands];
                for (b, v) in out.iter_mut().enumerate() {
                    let raw = f64::from(chunk.bands[self.band_columns[b]][obs]);
                    *v = (raw * self.gain[b] + self.bias[b]) as f32;
                }
                if let Some(d) = &mut doy {
                    d[step] = i64::from(Date::from_days_since_epoch(chunk.date[obs]).day_of_year());
                }
                if let Some(m) = &mut mask {
                    m[step] = true;
                }
            }
            observations += len;
        }
        Batch {
            pixels: group.iter().map(|g| g.1).collect(),
            length,
            bands,
            values,
            doy,
            mask,
            observations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::contract::{DoyEncoding, Inputs, LongSeries, Output, OutputKind, Scaling, Sequence};
    use treesits_core::species::tree_species;
    use treesits_core::{PixelWindow, Sensor, TileId};

    fn contract(padding: PaddingSide, max_length: Option<usize>) -> ModelContract {
        ModelContract {
            contract_version: 1,
            model_id: "t".into(),
            description: String::new(),
            bands: vec!["RED".into(), "BLUE".into()],
            sensors: Vec::new(),
            inputs: Inputs {
                values: "x".into(),
                doy: Some("doy".into()),
                mask: Some("mask".into()),
            },
            scaling: Scaling {
                scale: 0.001,
                offset: 1.0,
                mean: vec![2.0, 0.0],
                std: vec![0.5, 2.0],
            },
            sequence: Sequence {
                max_length,
                padding,
                pad_value: -7.0,
                long_series: LongSeries::Evenly,
                ignores_padding: true,
            },
            doy: DoyEncoding::Sinusoidal { dim: 4 },
            classes: tree_species()[..2].to_vec(),
            output: Output {
                name: "p".into(),
                kind: OutputKind::Probabilities,
            },
        }
    }

    fn meta(bands: &[&str]) -> ChunkMetadata {
        // A 10 × 10 px tile, read one row at a time.
        ChunkMetadata {
            tile_id: TileId::new(1, 2),
            tile_size: (10, 10),
            window: PixelWindow::new(0, 0, 1, 10),
            chunk_index: Some(0),
            sensors: vec![Sensor::Sen2a],
            band_names: bands.iter().map(|b| b.to_string()).collect(),
            qai_screen: "none".into(),
            ..ChunkMetadata::example()
        }
    }

    /// Pixel 0: 3 observations, pixel 1: none, pixel 2: 1 observation, pixel 3: 5 observations.
    /// Band BLUE = 10·obs, GREEN = −1, RED = 1000 + obs; dates 2021-01-01 + 10·obs.
    fn chunk() -> ChunkColumns {
        let offsets = vec![0, 3, 3, 4, 9];
        let obs: Vec<i32> = (0..9).collect();
        let jan1 = Date::new(2021, 1, 1).unwrap().days_since_epoch();
        ChunkColumns {
            row: vec![0; 4],
            col: vec![0, 1, 2, 3],
            offsets,
            date: obs.iter().map(|o| jan1 + 10 * o).collect(),
            sensor: vec![0; 9],
            bands: vec![
                obs.iter().map(|o| (10 * o) as i16).collect(),
                vec![-1; 9],
                obs.iter().map(|o| (1000 + o) as i16).collect(),
            ],
        }
    }

    /// The scaled (RED, BLUE) pair of observation `o`.
    fn scaled(o: i32) -> [f32; 2] {
        let red = ((1000 + o) as f64 * 0.001 + 1.0 - 2.0) / 0.5;
        let blue = ((10 * o) as f64 * 0.001 + 1.0) / 2.0;
        [red as f32, blue as f32]
    }

    #[test]
    fn left_padding_buckets_by_length_and_scales_per_band() {
        let p = Packer::new(
            &contract(PaddingSide::Left, None),
            &meta(&["BLUE", "GREEN", "RED"]),
            None,
        )
        .unwrap();
        let packed = p.pack(&chunk(), 2);
        assert_eq!(
            (packed.pixels, packed.empty_pixels, packed.observations),
            (4, 1, 9)
        );
        // Sorted by length: pixel 2 (1 obs), pixel 0 (3) | pixel 3 (5).
        assert_eq!(packed.batches.len(), 2);
        let b = &packed.batches[0];
        assert_eq!((b.pixels.clone(), b.length, b.observations), (vec![2, 0], 3, 4));
        let pad = [-7.0f32, -7.0];
        let mut want = Vec::new();
        for step in [pad, pad, scaled(3), scaled(0), scaled(1), scaled(2)] {
            want.extend(step);
        }
        assert_eq!(b.values, want);
        assert_eq!(b.doy.as_ref().unwrap(), &vec![0, 0, 31, 1, 11, 21]);
        assert_eq!(
            b.mask.as_ref().unwrap(),
            &vec![false, false, true, true, true, true]
        );
        assert_eq!(packed.batches[1].length, 5);
        assert_eq!(packed.positions(), 2 * 3 + 5);
    }

    #[test]
    fn without_ignores_padding_a_batch_holds_one_length_and_nothing_is_padded() {
        let mut c = contract(PaddingSide::Left, None);
        c.sequence.ignores_padding = false;
        let p = Packer::new(&c, &meta(&["BLUE", "GREEN", "RED"]), None).unwrap();
        assert!(!p.pads_within_batch());
        // Two more pixels of 3 observations (as pixel 0): lengths 3, 0, 1, 5, 3, 3.
        let mut ch = chunk();
        ch.row.extend([0, 0]);
        ch.col.extend([4, 5]);
        ch.offsets.extend([12, 15]);
        ch.date.extend(ch.date[..6].to_vec());
        ch.sensor.extend([0; 6]);
        for b in &mut ch.bands {
            let first: Vec<i16> = b[..6].to_vec();
            b.extend(first);
        }
        for batch_size in [1, 2, 1000] {
            let packed = p.pack(&ch, batch_size);
            let groups: Vec<(Vec<u32>, usize)> = packed
                .batches
                .iter()
                .map(|b| (b.pixels.clone(), b.length))
                .collect();
            let want: Vec<(Vec<u32>, usize)> = match batch_size {
                1 => vec![
                    (vec![2], 1),
                    (vec![0], 3),
                    (vec![4], 3),
                    (vec![5], 3),
                    (vec![3], 5),
                ],
                2 => vec![(vec![2], 1), (vec![0, 4], 3), (vec![5], 3), (vec![3], 5)],
                _ => vec![(vec![2], 1), (vec![0, 4, 5], 3), (vec![3], 5)],
            };
            assert_eq!(groups, want, "batch size {batch_size}");
            // No padding anywhere: every step of every batch is an observation.
            assert_eq!(packed.positions(), 1 + 3 * 3 + 5);
            assert!(packed
                .batches
                .iter()
                .all(|b| b.mask.as_ref().unwrap().iter().all(|m| *m)));
            // Pixel 0's tensor is the same whatever it is batched with.
            let b = packed.batches.iter().find(|b| b.pixels.contains(&0)).unwrap();
            let row = b.pixels.iter().position(|&q| q == 0).unwrap();
            let mut want = Vec::new();
            for o in 0..3 {
                want.extend(scaled(o));
            }
            assert_eq!(b.values[row * 6..(row + 1) * 6], want[..]);
        }
        // A fixed sequence length pads every series to exactly that length, whatever its batch.
        c.sequence.max_length = Some(5);
        let p = Packer::new(&c, &meta(&["BLUE", "GREEN", "RED"]), Some(5)).unwrap();
        assert!(p.pads_within_batch());
        let packed = p.pack(&ch, 1000);
        assert_eq!(packed.batches.len(), 1);
        assert_eq!(packed.batches[0].length, 5);
    }

    #[test]
    fn right_padding_thinning_and_fixed_length() {
        let c = contract(PaddingSide::Right, Some(2));
        let p = Packer::new(&c, &meta(&["RED", "BLUE"]), Some(4)).unwrap();
        // Bands in the chunk order RED, BLUE: band 0 of the chunk is RED.
        let mut ch = chunk();
        ch.bands.remove(1);
        ch.bands.swap(0, 1);
        let packed = p.pack(&ch, 10);
        assert_eq!(packed.batches.len(), 1);
        let b = &packed.batches[0];
        // Lengths: pixel 2 → 1, pixel 0 → 2 (of 3: first and last), pixel 3 → 2 (of 5).
        assert_eq!(
            (b.pixels.clone(), b.length, b.observations),
            (vec![2, 0, 3], 4, 5)
        );
        let pad = [-7.0f32, -7.0];
        let mut want = Vec::new();
        for step in [
            scaled(3),
            pad,
            pad,
            pad, //
            scaled(0),
            scaled(2),
            pad,
            pad, //
            scaled(4),
            scaled(8),
            pad,
            pad,
        ] {
            want.extend(step);
        }
        assert_eq!(b.values, want);
        assert_eq!(b.mask.as_ref().unwrap().iter().filter(|m| **m).count(), 5);
    }

    #[test]
    fn chunks_and_fixed_lengths_that_do_not_fit_are_refused() {
        let e = Packer::new(
            &contract(PaddingSide::Left, None),
            &meta(&["BLUE", "GREEN"]),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs band 'RED'"), "{e}");
        let e = Packer::new(
            &contract(PaddingSide::Left, Some(6)),
            &meta(&["BLUE", "RED"]),
            Some(4),
        )
        .unwrap_err();
        assert!(e.to_string().contains("fixed sequence length of 4"), "{e}");
        // A contract that lists its sensors refuses chunks of others.
        let mut c = contract(PaddingSide::Left, None);
        c.sensors = vec![Sensor::Lnd08, Sensor::Sen2a];
        assert!(Packer::new(&c, &meta(&["BLUE", "RED"]), None).is_ok());
        let m = ChunkMetadata {
            sensors: vec![Sensor::Sen2a, Sensor::Lnd09],
            ..meta(&["BLUE", "RED"])
        };
        let e = Packer::new(&c, &m, None).unwrap_err();
        assert!(e.to_string().contains("accepts only LND08,SEN2A"), "{e}");
        assert!(e.to_string().contains("holds LND09"), "{e}");
    }
}
