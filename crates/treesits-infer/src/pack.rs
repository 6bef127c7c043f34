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

/// How large one model batch may be: at most `pixels` pixels, and at most `bytes` by the estimate
/// `(per_position + per_step × T)` bytes for each of its positions (pixels × its sequence length
/// `T`), so a batch of long series holds fewer pixels. A batch always holds at least one pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub pixels: usize,
    pub bytes: u64,
    pub per_position: u64,
    pub per_step: u64,
}

impl BatchLimits {
    /// At most `pixels` pixels, whatever their length.
    pub fn pixels(pixels: usize) -> BatchLimits {
        BatchLimits::positions(pixels, usize::MAX)
    }

    /// At most `pixels` pixels and `positions` positions (whatever `T`).
    pub fn positions(pixels: usize, positions: usize) -> BatchLimits {
        BatchLimits {
            pixels: pixels.max(1),
            bytes: positions as u64,
            per_position: 1,
            per_step: 0,
        }
    }

    /// The most positions of one batch of series of length `t`.
    pub fn positions_at(&self, t: usize) -> usize {
        let per = self.per_position + self.per_step * t as u64;
        usize::try_from(self.bytes / per.max(1)).unwrap_or(usize::MAX)
    }

    /// Pixels of one batch of series of length `t`: its positions / `t`, between 1 and `pixels`.
    pub fn pixels_at(&self, t: usize) -> usize {
        (self.positions_at(t) / t.max(1)).clamp(1, self.pixels.max(1))
    }
}

/// A chunk's pixels in packing order (sorted by series length) and cut into batches, not yet
/// packed: [`Packer::batches`] packs them one at a time, so only the batches in flight hold tensors.
#[derive(Debug, Clone, Default)]
pub struct ChunkPlan {
    /// (selected length, pixel) of the pixels with observations, sorted by length.
    order: Vec<(usize, u32)>,
    /// Each batch as a range of `order`.
    groups: Vec<std::ops::Range<usize>>,
    /// Pixels of the chunk, with and without observations.
    pub pixels: usize,
    /// Pixels with `n_obs = 0` (written as nodata).
    pub empty_pixels: usize,
    /// Observations in the chunk (before thinning long series).
    pub observations: usize,
}

impl ChunkPlan {
    /// Number of model batches.
    pub fn batches(&self) -> usize {
        self.groups.len()
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

    /// Sorts the pixels of `chunk` by series length and cuts them into batches within `limits`.
    ///
    /// The cut is one rule for every model: consecutive pixels (in length order) go into one batch
    /// until it would exceed `limits` or, unless [`Packer::pads_within_batch`], until the length
    /// changes. With one length per batch, how many pixels share a batch changes no pixel's tensor,
    /// so the budget and `--batch-size` never change a result.
    pub fn plan(&self, chunk: &ChunkColumns, limits: BatchLimits) -> ChunkPlan {
        let n = chunk.pixels();
        // Stable: ties keep the chunk's order, so results never depend on how pixels are grouped.
        let mut order: Vec<(usize, u32)> = (0..n)
            .filter_map(|i| {
                let obs = chunk.range(i).len();
                (obs > 0).then(|| (self.selected_len(obs), i as u32))
            })
            .collect();
        order.sort_by_key(|&(len, _)| len);
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 1..order.len() {
            let pixels = i + 1 - start;
            // Sorted by length: pixel i is the longest so far, so it sets the batch's length.
            let length = self.fixed_length.unwrap_or(order[i].0);
            let full = pixels > limits.pixels_at(length);
            let other_length = !self.pads_within_batch() && order[i].0 != order[start].0;
            if full || other_length {
                groups.push(start..i);
                start = i;
            }
        }
        if start < order.len() {
            groups.push(start..order.len());
        }
        ChunkPlan {
            pixels: n,
            empty_pixels: n - order.len(),
            observations: chunk.observations(),
            order,
            groups,
        }
    }

    /// The batches of `plan` (made by [`Packer::plan`] from this `chunk`), packed one at a time
    /// as the iterator is advanced.
    pub fn batches<'a>(
        &'a self,
        chunk: &'a ChunkColumns,
        plan: &'a ChunkPlan,
    ) -> impl Iterator<Item = Batch> + 'a {
        plan.groups
            .iter()
            .map(move |g| self.pack_batch(chunk, &plan.order[g.clone()]))
    }

    /// Packs a whole chunk at once (tests and benchmarks; `predict` packs lazily, see
    /// [`Packer::batches`]).
    pub fn pack(&self, chunk: &ChunkColumns, limits: BatchLimits) -> PackedChunk {
        let plan = self.plan(chunk, limits);
        PackedChunk {
            batches: self.batches(chunk, &plan).collect(),
            pixels: plan.pixels,
            empty_pixels: plan.empty_pixels,
            observations: plan.observations,
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
        let packed = p.pack(&chunk(), BatchLimits::pixels(2));
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
            let packed = p.pack(&ch, BatchLimits::pixels(batch_size));
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
        let packed = p.pack(&ch, BatchLimits::pixels(1000));
        assert_eq!(packed.batches.len(), 1);
        assert_eq!(packed.batches[0].length, 5);
    }

    /// A chunk of `lengths.len()` pixels, pixel `i` with `lengths[i]` observations (the values of
    /// [`chunk`]'s scheme, repeated).
    fn chunk_of(lengths: &[usize]) -> ChunkColumns {
        let mut offsets = vec![0i32];
        for l in lengths {
            offsets.push(offsets.last().unwrap() + *l as i32);
        }
        let n = *offsets.last().unwrap() as usize;
        let obs: Vec<i32> = (0..n as i32).map(|o| o % 300).collect();
        let jan1 = Date::new(2021, 1, 1).unwrap().days_since_epoch();
        ChunkColumns {
            row: vec![0; lengths.len()],
            col: (0..lengths.len() as u32).collect(),
            offsets,
            date: obs.iter().map(|o| jan1 + o).collect(),
            sensor: vec![0; n],
            bands: vec![
                obs.iter().map(|o| (10 * o) as i16).collect(),
                vec![-1; n],
                obs.iter().map(|o| (1000 + o) as i16).collect(),
            ],
        }
    }

    #[test]
    fn batches_never_exceed_the_positions_cap_and_the_cap_changes_no_pixel_s_tensor() {
        // Lengths 0..=40 in a scrambled order, several pixels of each; max_length 32 thins the rest.
        let lengths: Vec<usize> = (0..400).map(|i| (i * 37 + 11) % 41).collect();
        let ch = chunk_of(&lengths);
        let bands = meta(&["BLUE", "GREEN", "RED"]);
        let mut one_length = contract(PaddingSide::Left, Some(32));
        one_length.sequence.ignores_padding = false;
        let packers = [
            (
                "one length per batch",
                Packer::new(&one_length, &bands, None).unwrap(),
            ),
            (
                "ignores padding",
                Packer::new(&contract(PaddingSide::Right, Some(32)), &bands, None).unwrap(),
            ),
            (
                "fixed length",
                Packer::new(&contract(PaddingSide::Left, Some(32)), &bands, Some(32)).unwrap(),
            ),
        ];
        for (name, p) in &packers {
            // Each pixel's (values, doy, mask) rows, with no cap: the reference.
            let rows =
                |packed: &PackedChunk| -> std::collections::BTreeMap<u32, (Vec<f32>, Vec<i64>, usize)> {
                    let mut m = std::collections::BTreeMap::new();
                    for b in &packed.batches {
                        for (r, &px) in b.pixels.iter().enumerate() {
                            let t = b.length;
                            let v = b.values[r * t * b.bands..(r + 1) * t * b.bands].to_vec();
                            let d = b.doy.as_ref().unwrap()[r * t..(r + 1) * t].to_vec();
                            assert!(m.insert(px, (v, d, t)).is_none(), "{name}: pixel {px} twice");
                        }
                    }
                    m
                };
            let reference = p.pack(&ch, BatchLimits::pixels(10_000));
            let want = rows(&reference);
            assert_eq!(want.len(), lengths.iter().filter(|&&l| l > 0).count());
            for (pixels, positions) in [
                (1024, 1),
                (1024, 31),
                (1024, 32),
                (7, 100),
                (1024, 100),
                (50, 1000),
                (3, usize::MAX),
            ] {
                let limits = BatchLimits::positions(pixels, positions);
                let plan = p.plan(&ch, limits);
                let lazy: Vec<Batch> = p.batches(&ch, &plan).collect();
                let packed = p.pack(&ch, limits);
                assert_eq!(lazy, packed.batches, "{name}: lazy and whole packing agree");
                assert_eq!(plan.batches(), packed.batches.len());
                for b in &packed.batches {
                    let n = b.pixels.len();
                    assert!(n >= 1 && n <= pixels, "{name} {limits:?}: {n} pixels");
                    assert!(
                        n == 1 || n * b.length <= positions,
                        "{name} {limits:?}: {n} pixels × {} steps",
                        b.length
                    );
                    // As many pixels as fit: the cap formula, for batches of one length.
                    if !p.pads_within_batch() {
                        assert!(n <= limits.pixels_at(b.length));
                    }
                }
                if !p.pads_within_batch() || p.fixed_length.is_some() {
                    // The tensor of every pixel is the same whatever the cap.
                    assert_eq!(rows(&packed), want, "{name} {limits:?}");
                }
            }
        }
        assert_eq!(BatchLimits::positions(1024, 64 * 500).pixels_at(64), 500);
        assert_eq!(BatchLimits::positions(1024, 10).pixels_at(64), 1);
        assert_eq!(BatchLimits::pixels(1024).pixels_at(64), 1024);
        // Bytes per position that grow with T (attention): long series get fewer positions.
        let t_dependent = BatchLimits {
            pixels: 1024,
            bytes: 1 << 20,
            per_position: 64,
            per_step: 8,
        };
        assert_eq!(t_dependent.positions_at(8), (1 << 20) / 128);
        assert_eq!(t_dependent.positions_at(120), (1 << 20) / 1024);
        assert_eq!(t_dependent.pixels_at(120), (1 << 20) / 1024 / 120);
        let plan = packers[0].1.plan(&ch, t_dependent);
        for b in packers[0].1.batches(&ch, &plan) {
            let per = 64 + 8 * b.length as u64;
            assert!(b.pixels.len() == 1 || (b.pixels.len() * b.length) as u64 * per <= 1 << 20);
        }
    }

    #[test]
    fn right_padding_thinning_and_fixed_length() {
        let c = contract(PaddingSide::Right, Some(2));
        let p = Packer::new(&c, &meta(&["RED", "BLUE"]), Some(4)).unwrap();
        // Bands in the chunk order RED, BLUE: band 0 of the chunk is RED.
        let mut ch = chunk();
        ch.bands.remove(1);
        ch.bands.swap(0, 1);
        let packed = p.pack(&ch, BatchLimits::pixels(10));
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
