//! Prediction chunks: the Arrow IPC stream `predict` writes and `mosaic` reads.
//!
//! One record batch per time-series chunk it came from, one row per pixel of that chunk, in the same
//! order:
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `row`, `col` | UInt32 | pixel position in the tile |
//! | `class` | UInt8 | class code from the model's class table; [`CLASS_NODATA`] for a pixel without observations |
//! | `prob` | UInt16 | probability of that class × 10000; [`PROB_NODATA`] for a pixel without observations |
//! | `probabilities` (optional) | FixedSizeList\<UInt16\>\[classes\] | every class's probability × 10000, in class-table order |
//! | `uncertainty` (optional) | UInt16 | × 10000, see [`Uncertainty`] |
//! | `checksum` | UInt32 | the batch's CRC-32 (every row holds it), as in [`crate::chunk`] |
//!
//! The schema metadata is the input chunk's ([`ChunkMetadata`], with the format name, version and
//! metadata checksum replaced) plus the model id, its class table and the uncertainty measure.
//! Checksums and the end-of-stream marker are written and verified as for time-series chunks
//! ([`crate::chunk`], "Integrity"). Documented for users in `docs/formats.md` ("Prediction chunks");
//! bump [`FORMAT_VERSION`] on any change.

use std::io::{Read, Write};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, RecordBatch, UInt16Array, UInt32Array, UInt8Array};

use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::chunk::{self, ChunkError, ChunkMetadata, Metadata, CHECKSUM_COLUMN};
use crate::contract::ModelContract;
use crate::species::{SpeciesClass, CLASS_NODATA};

/// Value of the `treesits.format` metadata key.
pub const FORMAT_NAME: &str = "treesits-prediction-chunk";
/// Version of the layout below: 2 added the checksums (as [`chunk::FORMAT_VERSION`] 2 did), 3 follows
/// the time-series chunks' 3 (several batches per chunk file, one per input batch). Readers accept
/// 1 to 3.
pub const FORMAT_VERSION: u32 = 3;
/// `prob`, `probabilities` and `uncertainty` value of a pixel without observations.
pub const PROB_NODATA: u16 = 65535;
/// Probabilities are stored as `round(p · PROB_SCALE)`.
pub const PROB_SCALE: f32 = 10_000.0;

/// Metadata keys added to those of [`chunk::keys`].
pub mod keys {
    pub const MODEL_ID: &str = "treesits.model_id";
    pub const CLASSES: &str = "treesits.classes";
    pub const UNCERTAINTY: &str = "treesits.uncertainty";
    pub const PROBABILITIES: &str = "treesits.probabilities";
    /// SHA-256 (lower-case hex) of the model file; absent in files of earlier builds.
    pub const MODEL_SHA256: &str = "treesits.model_sha256";
    /// File name (no directory) of the model predict ran; absent in files of earlier builds.
    pub const MODEL_FILE: &str = "treesits.model_file";
    /// The model's contract as JSON (bands, scaling, sequence, classes); absent in files of earlier
    /// builds.
    pub const MODEL_CONTRACT: &str = "treesits.model_contract";
}

/// Per-pixel uncertainty, stored × 10000 (0 = certain, 10000 = maximally uncertain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncertainty {
    /// `1 − (p₁ − p₂)`: one minus the margin between the two most probable classes.
    Margin,
    /// `−Σ p·ln p / ln K`: Shannon entropy normalised by its maximum for K classes.
    Entropy,
}

impl Uncertainty {
    pub fn name(self) -> &'static str {
        match self {
            Uncertainty::Margin => "margin",
            Uncertainty::Entropy => "entropy",
        }
    }

    /// The uncertainty of one probability vector (summing to 1), in 0..=1.
    pub fn of(self, p: &[f32]) -> f32 {
        match self {
            Uncertainty::Margin => {
                let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                for &v in p {
                    if v > a {
                        b = a;
                        a = v;
                    } else if v > b {
                        b = v;
                    }
                }
                if p.len() < 2 {
                    return 0.0;
                }
                (1.0 - (a - b)).clamp(0.0, 1.0)
            }
            Uncertainty::Entropy => {
                if p.len() < 2 {
                    return 0.0;
                }
                let h: f32 = p.iter().filter(|&&v| v > 0.0).map(|&v| -v * v.ln()).sum();
                (h / (p.len() as f32).ln()).clamp(0.0, 1.0)
            }
        }
    }
}

impl std::str::FromStr for Uncertainty {
    type Err = crate::choice::UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "margin" => Ok(Uncertainty::Margin),
            "entropy" => Ok(Uncertainty::Entropy),
            _ => Err(crate::choice::UnknownChoice::new(
                "uncertainty",
                s,
                "margin or entropy",
            )),
        }
    }
}

/// Stores a probability in 0..=1 as UInt16 0..=10000.
pub fn scale_prob(p: f32) -> u16 {
    (p.clamp(0.0, 1.0) * PROB_SCALE).round() as u16
}

/// What a prediction chunk says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionMetadata {
    /// The metadata of the time-series chunk the predictions came from.
    pub source: ChunkMetadata,
    pub model_id: String,
    /// SHA-256 (lower-case hex) of the ONNX file predict ran; `None` in files of earlier builds.
    pub model_sha256: Option<String>,
    /// File name (no directory) of the ONNX file; `None` in files of earlier builds.
    pub model_file: Option<String>,
    /// The contract predict ran the model with; `None` in files of earlier builds.
    pub model_contract: Option<ModelContract>,
    /// The model's class table, in output order.
    pub classes: Vec<SpeciesClass>,
    /// Whether the `probabilities` column is present.
    pub probabilities: bool,
    /// Whether (and which) `uncertainty` column is present.
    pub uncertainty: Option<Uncertainty>,
}

fn meta_err(s: impl Into<String>) -> ChunkError {
    ChunkError::Metadata(s.into())
}

impl PredictionMetadata {
    pub fn to_map(&self) -> Metadata {
        let mut m = self.source.to_map();
        m.insert(chunk::keys::FORMAT, FORMAT_NAME);
        m.insert(chunk::keys::VERSION, FORMAT_VERSION.to_string());
        m.insert(keys::MODEL_ID, self.model_id.clone());
        if let Some(sha) = &self.model_sha256 {
            m.insert(keys::MODEL_SHA256, sha.clone());
        }
        if let Some(f) = &self.model_file {
            m.insert(keys::MODEL_FILE, f.clone());
        }
        if let Some(c) = &self.model_contract {
            // Compact: it is repeated in every chunk.
            m.insert(
                keys::MODEL_CONTRACT,
                serde_json::to_string(c).expect("a contract always serialises"),
            );
        }
        m.insert(
            keys::CLASSES,
            serde_json::to_string(&self.classes).expect("classes serialise"),
        );
        m.insert(keys::PROBABILITIES, self.probabilities.to_string());
        m.insert(
            keys::UNCERTAINTY,
            self.uncertainty.map_or("none", Uncertainty::name),
        );
        chunk::seal(&mut m);
        m
    }

    /// Reads the metadata back, refusing other formats and versions.
    pub fn from_map(m: &Metadata) -> Result<PredictionMetadata, ChunkError> {
        let get = |k: &str| {
            m.get(k)
                .map(String::as_str)
                .ok_or_else(|| meta_err(format!("no '{k}' key")))
        };
        let format = get(chunk::keys::FORMAT)?;
        if format != FORMAT_NAME {
            return Err(meta_err(format!(
                "'{format}' is not {FORMAT_NAME} (a time-series chunk goes to predict, not here)"
            )));
        }
        const _: () = assert!(
            FORMAT_VERSION == chunk::FORMAT_VERSION,
            "the formats share checksums"
        );
        chunk::check_version(m, "prediction format")?;
        // The inherited keys are parsed by the time-series reader.
        let source = ChunkMetadata::parse(m)?;
        let classes: Vec<SpeciesClass> = serde_json::from_str(get(keys::CLASSES)?)
            .map_err(|e| meta_err(format!("bad '{}': {e}", keys::CLASSES)))?;
        let probabilities = match get(keys::PROBABILITIES)? {
            "true" => true,
            "false" => false,
            s => return Err(meta_err(format!("bad '{}' value '{s}'", keys::PROBABILITIES))),
        };
        let uncertainty = match get(keys::UNCERTAINTY)? {
            "none" => None,
            s => Some(
                s.parse()
                    .map_err(|e: crate::choice::UnknownChoice| meta_err(e.to_string()))?,
            ),
        };
        Ok(PredictionMetadata {
            source,
            model_id: get(keys::MODEL_ID)?.to_string(),
            model_sha256: m.get(keys::MODEL_SHA256).cloned(),
            model_file: m.get(keys::MODEL_FILE).cloned(),
            model_contract: m
                .get(keys::MODEL_CONTRACT)
                .map(|s| ModelContract::from_json(s))
                .transpose()
                .map_err(|e| meta_err(format!("bad '{}': {e}", keys::MODEL_CONTRACT)))?,
            classes,
            probabilities,
            uncertainty,
        })
    }

    pub fn schema(&self) -> Schema {
        let mut fields = vec![
            Field::new("row", DataType::UInt32, false),
            Field::new("col", DataType::UInt32, false),
            Field::new("class", DataType::UInt8, false),
            Field::new("prob", DataType::UInt16, false),
        ];
        if self.probabilities {
            fields.push(Field::new(
                "probabilities",
                DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::UInt16, false)),
                    self.classes.len() as i32,
                ),
                false,
            ));
        }
        if self.uncertainty.is_some() {
            fields.push(Field::new("uncertainty", DataType::UInt16, false));
        }
        fields.push(Field::new(CHECKSUM_COLUMN, DataType::UInt32, false));
        Schema::new(fields).with_metadata(self.to_map())
    }
}

/// The predictions of one chunk, column by column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PredictionColumns {
    pub row: Vec<u32>,
    pub col: Vec<u32>,
    pub class: Vec<u8>,
    pub prob: Vec<u16>,
    /// `pixels × classes` values, pixel after pixel, when written.
    pub probabilities: Option<Vec<u16>>,
    pub uncertainty: Option<Vec<u16>>,
}

impl PredictionColumns {
    pub fn pixels(&self) -> usize {
        self.row.len()
    }

    /// Appends `other`'s pixels (a further batch of the same chunk: a chunk cut into column ranges
    /// is several batches, see [`crate::chunk`]). Both must have the same optional columns.
    pub fn append(&mut self, other: PredictionColumns) -> Result<(), ChunkError> {
        if self.probabilities.is_some() != other.probabilities.is_some()
            || self.uncertainty.is_some() != other.uncertainty.is_some()
        {
            return Err(meta_err("its batches have different columns"));
        }
        self.row.extend(other.row);
        self.col.extend(other.col);
        self.class.extend(other.class);
        self.prob.extend(other.prob);
        if let (Some(a), Some(b)) = (&mut self.probabilities, other.probabilities) {
            a.extend(b);
        }
        if let (Some(a), Some(b)) = (&mut self.uncertainty, other.uncertainty) {
            a.extend(b);
        }
        Ok(())
    }

    /// Appends a pixel without observations (nodata everywhere).
    pub fn push_nodata(&mut self, row: u32, col: u32, classes: usize) {
        self.row.push(row);
        self.col.push(col);
        self.class.push(CLASS_NODATA);
        self.prob.push(PROB_NODATA);
        if let Some(p) = &mut self.probabilities {
            p.resize(p.len() + classes, PROB_NODATA);
        }
        if let Some(u) = &mut self.uncertainty {
            u.push(PROB_NODATA);
        }
    }

    pub fn to_record_batch(&self, schema: SchemaRef) -> Result<RecordBatch, ChunkError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(self.row.clone())),
            Arc::new(UInt32Array::from(self.col.clone())),
            Arc::new(UInt8Array::from(self.class.clone())),
            Arc::new(UInt16Array::from(self.prob.clone())),
        ];
        if let Ok(field) = schema.field_with_name("probabilities") {
            let (DataType::FixedSizeList(item, n), Some(p)) = (field.data_type(), &self.probabilities) else {
                return Err(ChunkError::Column("probabilities".into()));
            };
            columns.push(Arc::new(FixedSizeListArray::try_new(
                item.clone(),
                *n,
                Arc::new(UInt16Array::from(p.clone())),
                None,
            )?));
        }
        if schema.field_with_name("uncertainty").is_ok() {
            let u = self
                .uncertainty
                .as_ref()
                .ok_or_else(|| ChunkError::Column("uncertainty".into()))?;
            columns.push(Arc::new(UInt16Array::from(u.clone())));
        }
        let columns = chunk::with_checksum(&schema, columns, self.row.len())?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Reads a batch back, verifying its checksums first (version 2; a version-1 batch has none).
    pub fn from_record_batch(batch: &RecordBatch) -> Result<PredictionColumns, ChunkError> {
        chunk::verify_batch(batch)?;
        fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, ChunkError> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| ChunkError::Column(name.to_string()))
        }
        let probabilities = match batch.column_by_name("probabilities") {
            None => None,
            Some(c) => {
                let l = c
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()
                    .ok_or_else(|| ChunkError::Column("probabilities".into()))?;
                let n = l.value_length() as usize;
                let v = l
                    .values()
                    .slice(l.offset() * n, l.len() * n)
                    .as_any()
                    .downcast_ref::<UInt16Array>()
                    .ok_or_else(|| ChunkError::Column("probabilities".into()))?
                    .values()
                    .to_vec();
                Some(v)
            }
        };
        let uncertainty = match batch.column_by_name("uncertainty") {
            None => None,
            Some(_) => Some(col::<UInt16Array>(batch, "uncertainty")?.values().to_vec()),
        };
        Ok(PredictionColumns {
            row: col::<UInt32Array>(batch, "row")?.values().to_vec(),
            col: col::<UInt32Array>(batch, "col")?.values().to_vec(),
            class: col::<UInt8Array>(batch, "class")?.values().to_vec(),
            prob: col::<UInt16Array>(batch, "prob")?.values().to_vec(),
            probabilities,
            uncertainty,
        })
    }
}

/// Writes a prediction stream: schema first, then one batch per input chunk, zstd-compressed.
pub struct PredictionWriter<W: Write> {
    schema: SchemaRef,
    inner: StreamWriter<W>,
}

impl<W: Write> PredictionWriter<W> {
    /// A writer compressing at [`chunk::DEFAULT_ZSTD_LEVEL`].
    pub fn new(out: W, meta: &PredictionMetadata) -> Result<PredictionWriter<W>, ChunkError> {
        let schema = Arc::new(meta.schema());
        let inner = chunk::zstd_stream_writer(out, &schema, chunk::DEFAULT_ZSTD_LEVEL)?;
        Ok(PredictionWriter { schema, inner })
    }

    pub fn write(&mut self, columns: &PredictionColumns) -> Result<(), ChunkError> {
        let batch = columns.to_record_batch(self.schema.clone())?;
        self.inner.write(&batch)?;
        Ok(())
    }

    /// Writes the end-of-stream marker and returns the output.
    pub fn finish(mut self) -> Result<W, ChunkError> {
        self.inner.finish()?;
        Ok(self.inner.into_inner()?)
    }
}

/// Reads prediction batches one by one (bounded memory for long streams), verifying each batch's
/// checksum (version 2) and requiring the end-of-stream marker: a stream that ends without it gives
/// [`ChunkError::Truncated`] as its last item. Reads nothing after the marker, so streams sent back
/// to back can be read one after another from one input.
pub struct PredictionReader<R: Read> {
    meta: PredictionMetadata,
    batches: chunk::GuardedBatches<R>,
}

const WRITER: &str = "predict";

impl<R: Read> PredictionReader<R> {
    pub fn new(input: R) -> Result<PredictionReader<R>, ChunkError> {
        let batches = chunk::GuardedBatches::open(input, WRITER)?;
        let meta = PredictionMetadata::from_map(batches.schema().metadata())?;
        Ok(PredictionReader { meta, batches })
    }

    pub fn metadata(&self) -> &PredictionMetadata {
        &self.meta
    }
}

impl<R: Read> Iterator for PredictionReader<R> {
    type Item = Result<PredictionColumns, ChunkError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches
            .next_with(|b| PredictionColumns::from_record_batch(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::species::tree_species;
    use crate::Sensor;

    fn meta(probabilities: bool, uncertainty: Option<Uncertainty>) -> PredictionMetadata {
        PredictionMetadata {
            source: ChunkMetadata {
                sensors: vec![Sensor::Sen2a],
                band_names: vec!["BLUE".into()],
                ..ChunkMetadata::example()
            },
            model_id: "m1".into(),
            // Files of earlier builds have no model SHA-256: the first round trip reads one such.
            model_sha256: uncertainty.map(|_| "ab".repeat(32)),
            model_file: uncertainty.map(|_| "m1.onnx".into()),
            model_contract: uncertainty.map(|_| {
                ModelContract::from_json(include_str!("../../../models/testdata/linear_left.contract.json"))
                    .unwrap()
            }),
            classes: tree_species()[..3].to_vec(),
            probabilities,
            uncertainty,
        }
    }

    #[test]
    fn round_trips_with_and_without_optional_columns() {
        for (p, u) in [(false, None), (true, Some(Uncertainty::Entropy))] {
            let m = meta(p, u);
            let mut c = PredictionColumns {
                probabilities: p.then(Vec::new),
                uncertainty: u.map(|_| Vec::new()),
                ..Default::default()
            };
            c.row.push(300);
            c.col.push(4);
            c.class.push(2);
            c.prob.push(8000);
            if let Some(v) = &mut c.probabilities {
                v.extend([1000, 1000, 8000]);
            }
            if let Some(v) = &mut c.uncertainty {
                v.push(5700);
            }
            c.push_nodata(300, 5, 3);
            let mut w = PredictionWriter::new(Vec::new(), &m).unwrap();
            w.write(&c).unwrap();
            let bytes = w.finish().unwrap();
            let mut r = PredictionReader::new(bytes.as_slice()).unwrap();
            assert_eq!(r.metadata(), &m);
            let back = r.next().unwrap().unwrap();
            assert_eq!(back, c);
            assert_eq!(back.class[1], CLASS_NODATA);
            assert!(r.next().is_none());
        }
    }

    #[test]
    fn a_time_series_chunk_is_refused_with_a_hint() {
        let mut m = meta(false, None).to_map();
        m.insert(chunk::keys::FORMAT, chunk::FORMAT_NAME);
        let e = PredictionMetadata::from_map(&m).unwrap_err().to_string();
        assert!(e.contains("goes to predict"), "{e}");
    }

    #[test]
    fn uncertainty_measures() {
        assert_eq!(Uncertainty::Margin.of(&[1.0, 0.0, 0.0]), 0.0);
        assert!((Uncertainty::Margin.of(&[0.5, 0.3, 0.2]) - 0.8).abs() < 1e-6);
        assert!((Uncertainty::Entropy.of(&[0.25; 4]) - 1.0).abs() < 1e-6);
        assert_eq!(Uncertainty::Entropy.of(&[1.0, 0.0]), 0.0);
        assert_eq!(scale_prob(0.123_45), 1235);
        assert_eq!(scale_prob(1.2), 10_000);
    }

    /// `n` pixels of three classes; every seventh without observations.
    fn sample_columns(n: usize, m: &PredictionMetadata) -> PredictionColumns {
        let mut c = PredictionColumns {
            probabilities: m.probabilities.then(Vec::new),
            uncertainty: m.uncertainty.map(|_| Vec::new()),
            ..Default::default()
        };
        for i in 0..n {
            let (row, col) = (300 + (i / 40) as u32, (i % 40) as u32);
            if i % 7 == 3 {
                c.push_nodata(row, col, 3);
                continue;
            }
            let p = [(i * 37 % 5000) as u16, (i * 11 % 3000) as u16];
            let p = [p[0], p[1], 10_000 - p[0] - p[1]];
            let best = (0..3).max_by_key(|&k| (p[k], std::cmp::Reverse(k))).unwrap();
            c.row.push(row);
            c.col.push(col);
            c.class.push(m.classes[best].code);
            c.prob.push(p[best]);
            if let Some(v) = &mut c.probabilities {
                v.extend(p);
            }
            if let Some(u) = &mut c.uncertainty {
                u.push((i * 53 % 10_000) as u16);
            }
        }
        c
    }

    fn read_all(b: &[u8]) -> Result<(PredictionMetadata, Vec<PredictionColumns>), String> {
        let r = PredictionReader::new(b).map_err(|e| e.to_string())?;
        let m = r.metadata().clone();
        let batches = r.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        Ok((m, batches))
    }

    fn stream(m: &PredictionMetadata, batches: &[PredictionColumns]) -> Vec<u8> {
        let mut w = PredictionWriter::new(Vec::new(), m).unwrap();
        for c in batches {
            w.write(c).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn every_bit_flip_in_a_prediction_chunk_is_refused_or_harmless() {
        for (p, u) in [(false, None), (true, Some(Uncertainty::Margin))] {
            let m = meta(p, u);
            let batches = vec![sample_columns(150, &m), sample_columns(9, &m)];
            let bytes = stream(&m, &batches);
            let expected = (m, batches);
            assert_eq!(read_all(&bytes).unwrap(), expected);
            let (mut refused, mut silent) = (Vec::new(), Vec::new());
            for pos in 0..bytes.len() {
                let mut b = bytes.clone();
                b[pos] ^= 1 << (pos % 8);
                match read_all(&b) {
                    Err(e) => refused.push(e),
                    Ok(got) if got == expected => {} // padding, unused flatbuffer bytes
                    Ok(_) => silent.push(pos),
                }
            }
            assert!(
                silent.is_empty(),
                "{} of {} flipped bytes read without an error but with other content, at {silent:?}",
                silent.len(),
                bytes.len()
            );
            assert!(
                refused.len() * 4 > bytes.len() * 3,
                "{} of {}",
                refused.len(),
                bytes.len()
            );
            for s in [
                "its metadata fails its checksum",
                "batch 0 fails its checksum",
                "batch 1 fails its checksum",
                "the file is damaged; re-run predict to write it again",
                "cut short (no end-of-stream marker)",
            ] {
                assert!(refused.iter().any(|e| e.contains(s)), "no refusal says '{s}'");
            }
        }
    }

    #[test]
    fn a_prediction_stream_cut_anywhere_is_refused_as_cut_short() {
        let m = meta(true, Some(Uncertainty::Entropy));
        let bytes = stream(&m, &[sample_columns(40, &m), sample_columns(2, &m)]);
        for len in 0..bytes.len() {
            let e = read_all(&bytes[..len]).expect_err("a cut stream is refused");
            assert!(
                e.starts_with("the stream is cut short (no end-of-stream marker)")
                    && e.ends_with("re-run predict to write it again"),
                "cut at {len} of {}: {e}",
                bytes.len()
            );
        }
        // Only the end-of-stream marker missing: both batches come, then the error, then nothing.
        let mut r = PredictionReader::new(&bytes[..bytes.len() - 8]).unwrap();
        assert_eq!(r.next().unwrap().unwrap().pixels(), 40);
        assert_eq!(r.next().unwrap().unwrap().pixels(), 2);
        let e = r.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("cut short (no end-of-stream marker)"), "{e}");
        assert!(r.next().is_none());
    }

    #[test]
    fn streams_back_to_back_are_read_one_after_another() {
        let m = meta(false, None);
        let mut bytes = stream(&m, &[sample_columns(5, &m)]);
        bytes.extend(stream(&m, &[sample_columns(8, &m), sample_columns(1, &m)]));
        let mut input = bytes.as_slice();
        let first: Vec<_> = PredictionReader::new(&mut input)
            .unwrap()
            .map(|c| c.unwrap().pixels())
            .collect();
        let second: Vec<_> = PredictionReader::new(&mut input)
            .unwrap()
            .map(|c| c.unwrap().pixels())
            .collect();
        assert_eq!((first, second), (vec![5], vec![8, 1]));
        assert!(input.is_empty());
    }

    #[test]
    fn version_1_predictions_are_still_read_without_checksums() {
        let m = meta(true, None);
        let c = sample_columns(20, &m);
        let mut map = m.to_map();
        map.insert(chunk::keys::VERSION, "1");
        map.remove(chunk::keys::METADATA_CHECKSUM);
        let v2 = m.schema();
        let fields: Vec<Field> = v2.fields()[..v2.fields().len() - 1]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let schema = Arc::new(Schema::new(fields).with_metadata(map));
        let batch = c.to_record_batch(Arc::new(m.schema())).unwrap();
        let n = batch.num_columns();
        let batch = RecordBatch::try_new(schema.clone(), batch.columns()[..n - 1].to_vec()).unwrap();
        let mut w = StreamWriter::try_new(Vec::new(), &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(read_all(&bytes).unwrap(), (m.clone(), vec![c]));
        let mut v4 = m.to_map();
        v4.insert(chunk::keys::VERSION, "4");
        let e = PredictionMetadata::from_map(&v4).unwrap_err().to_string();
        assert!(
            e.ends_with("prediction format version 4 is not supported (this build reads versions 1 to 3)"),
            "{e}"
        );
    }
}
