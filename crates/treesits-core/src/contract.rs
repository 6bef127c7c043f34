//! The model contract: what an ONNX model expects as input and what its output means.
//!
//! A model carries its contract as one JSON document in its ONNX `metadata_props` under the key
//! [`METADATA_KEY`] (`--contract FILE` supplies or overrides it for a model without one). `predict`
//! packs observations exactly as the contract says and refuses chunks that do not match it, so
//! preprocessing can never drift between training and inference. Every key is documented for users in
//! `docs/model-contract.md`; bump [`CONTRACT_VERSION`] on any incompatible change.
//!
//! Tensors (all with a dynamic batch axis `B` and sequence axis `T`):
//!
//! | input | type | shape | content |
//! | --- | --- | --- | --- |
//! | `inputs.values` | float32 | `[B, T, bands]` | `((raw · scale + offset) − mean[b]) / std[b]`, `pad_value` where padded |
//! | `inputs.doy` (optional) | int64 | `[B, T]` | day of year 1..=366 of each observation, 0 where padded |
//! | `inputs.mask` (optional) | bool | `[B, T]` | true for a real observation, false for padding |
//!
//! The output `output.name` is float32 `[B, classes]`, column `i` belonging to `classes[i]`;
//! `output.kind` says whether it holds probabilities or logits (then `predict` applies softmax).

use serde::{Deserialize, Serialize};

use crate::level2::Sensor;
use crate::species::{SpeciesClass, CLASS_NODATA};

/// Key of the contract in the ONNX model's `metadata_props`.
pub const METADATA_KEY: &str = "treesits.contract";
/// Version of the contract layout below; `predict` refuses other versions.
pub const CONTRACT_VERSION: u32 = 1;

/// What is wrong with a contract (or with a chunk for it), naming the key or band.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("model contract is not valid JSON for contract version {CONTRACT_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "model contract: contract version {0} is not supported (this build reads version {CONTRACT_VERSION})"
    )]
    UnsupportedVersion(u64),
    #[error("model contract: no 'contract_version' number")]
    NoVersion,
    #[error("model contract: 'model_id' is empty")]
    EmptyModelId,
    #[error("model contract: 'bands' is empty")]
    NoBands,
    #[error("model contract: band '{0}' is listed twice in 'bands'")]
    DuplicateBand(String),
    #[error("model contract: 'scaling.scale' must be a finite non-zero number")]
    BadScale,
    #[error("model contract: 'scaling.{key}' has {got} values for {bands} bands")]
    StatisticsLength {
        key: &'static str,
        got: usize,
        bands: usize,
    },
    #[error("model contract: 'scaling.std' values must be positive")]
    BadStd,
    #[error("model contract: 'sequence.max_length' must be at least 1")]
    ZeroMaxLength,
    #[error("model contract: 'inputs.doy' is '{0}' but 'doy.encoding' is none")]
    DoyWithoutEncoding(String),
    #[error("model contract: 'doy.encoding' needs an 'inputs.doy' tensor name")]
    EncodingWithoutDoy,
    #[error("model contract: 'classes' is empty")]
    NoClasses,
    #[error("model contract: class '{0}' has code {CLASS_NODATA}, the class rasters' nodata value")]
    NodataClass(String),
    #[error("model contract: class code {0} is listed twice")]
    DuplicateClass(u8),
    #[error("model contract: sensor {0} is listed twice in 'sensors'")]
    DuplicateSensor(Sensor),
    #[error("model contract: sensor {sensor} has no band {band} of 'bands'")]
    SensorLacksBand { sensor: Sensor, band: String },
    #[error(
        "model contract: the model accepts only {} (its 'sensors') but the chunk holds {sensor}: extract \
         with the model's sensors (cube-extract --model)",
        accepted.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
    )]
    SensorNotAccepted { sensor: Sensor, accepted: Vec<Sensor> },
    #[error("model contract: the model needs band '{band}' but the chunk has only {} ({}): extract with the sensors the model was trained on", chunk_bands.len(), chunk_bands.join(","))]
    MissingBand { band: String, chunk_bands: Vec<String> },
}

/// The whole contract (the JSON document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelContract {
    pub contract_version: u32,
    /// Stable name of the model (written into prediction chunks), e.g. `treesits-synth-lstm-1`.
    pub model_id: String,
    /// Free text: architecture, training data, date.
    #[serde(default)]
    pub description: String,
    /// Band names in the order of the last axis of `values`; must be a subset of the chunk's bands.
    pub bands: Vec<String>,
    /// The sensors whose observations the model accepts (FORCE names, `SEN2A`, `LND08`, …); each must
    /// have every band of `bands`. Empty (or absent): any sensor that has the bands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensors: Vec<Sensor>,
    pub inputs: Inputs,
    pub scaling: Scaling,
    pub sequence: Sequence,
    pub doy: DoyEncoding,
    /// Output column `i` belongs to `classes[i]`.
    pub classes: Vec<SpeciesClass>,
    pub output: Output,
}

/// Names of the model's input tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// float32 `[B, T, bands]`.
    pub values: String,
    /// int64 `[B, T]` day of year, when the model encodes time itself (Transformer).
    #[serde(default)]
    pub doy: Option<String>,
    /// bool `[B, T]` observation mask, when the model takes one.
    #[serde(default)]
    pub mask: Option<String>,
}

/// `x = ((raw · scale + offset) − mean[b]) / std[b]`; `mean`/`std` empty means 0 and 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub mean: Vec<f64>,
    #[serde(default)]
    pub std: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// Padding before the first observation (the last step is the latest observation: LSTMs).
    Left,
    /// Padding after the last observation.
    Right,
}

/// What happens to a series longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongSeries {
    /// Keep `max_length` observations at evenly spaced positions `round(i·(n−1)/(max−1))`,
    /// always including the first and the last.
    Evenly,
    /// Keep the latest `max_length` observations.
    Latest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// Longest sequence the model takes; `null` for no limit.
    #[serde(default)]
    pub max_length: Option<usize>,
    pub padding: PaddingSide,
    /// Value of padded positions in `values` (after normalisation).
    #[serde(default)]
    pub pad_value: f32,
    #[serde(default = "default_long_series")]
    pub long_series: LongSeries,
    /// Whether the model's output for a series is the same however much padding surrounds it (it
    /// masks padded steps exactly, e.g. a Transformer with a key padding mask, or an LSTM that honours
    /// sequence lengths in both directions). Only then does `predict` pad a series to the longest of
    /// its batch; otherwise (the default, and every contract written before this key existed) a batch
    /// holds series of one length only, so no padding reaches the model (a model with a fixed
    /// sequence length always gets exactly that length). Either way a pixel's input never depends on
    /// the other pixels of its batch.
    #[serde(default)]
    pub ignores_padding: bool,
}

fn default_long_series() -> LongSeries {
    LongSeries::Evenly
}

/// How acquisition time reaches the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "encoding", rename_all = "lowercase")]
pub enum DoyEncoding {
    /// The model sees only the order of observations (LSTM).
    None,
    /// The model takes the day of year (1..=366) in `inputs.doy` and encodes it itself with a
    /// sinusoidal table of `dim` channels (`sin(doy / 10000^(2i/dim))`, `cos(…)`), as SITS-NN's
    /// Transformer does.
    Sinusoidal { dim: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Rows sum to 1 (softmax inside the graph).
    Probabilities,
    /// Unnormalised scores; `predict` applies softmax.
    Logits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: String,
    pub kind: OutputKind,
}

impl ModelContract {
    /// Parses and validates a contract document.
    pub fn from_json(s: &str) -> Result<ModelContract, ContractError> {
        // Look at the version first so an old or new contract gets a version error, not a field error.
        let v: serde_json::Value = serde_json::from_str(s)?;
        match v.get("contract_version").and_then(serde_json::Value::as_u64) {
            Some(n) if n == u64::from(CONTRACT_VERSION) => {}
            Some(n) => return Err(ContractError::UnsupportedVersion(n)),
            None => return Err(ContractError::NoVersion),
        }
        let c: ModelContract = serde_json::from_value(v)?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a contract always serialises")
    }

    /// Checks what serde cannot: lengths, uniqueness, ranges.
    pub fn validate(&self) -> Result<(), ContractError> {
        if self.model_id.trim().is_empty() {
            return Err(ContractError::EmptyModelId);
        }
        if self.bands.is_empty() {
            return Err(ContractError::NoBands);
        }
        for (i, b) in self.bands.iter().enumerate() {
            if self.bands[..i].contains(b) {
                return Err(ContractError::DuplicateBand(b.clone()));
            }
        }
        for (i, s) in self.sensors.iter().enumerate() {
            if self.sensors[..i].contains(s) {
                return Err(ContractError::DuplicateSensor(*s));
            }
            if let Some(b) = self.bands.iter().find(|b| s.band_index(b).is_none()) {
                return Err(ContractError::SensorLacksBand {
                    sensor: *s,
                    band: b.clone(),
                });
            }
        }
        let n = self.bands.len();
        let s = &self.scaling;
        if !(s.scale.is_finite() && s.scale != 0.0) {
            return Err(ContractError::BadScale);
        }
        for (key, values) in [("mean", &s.mean), ("std", &s.std)] {
            if !values.is_empty() && values.len() != n {
                return Err(ContractError::StatisticsLength {
                    key,
                    got: values.len(),
                    bands: n,
                });
            }
        }
        if s.std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(ContractError::BadStd);
        }
        if self.sequence.max_length == Some(0) {
            return Err(ContractError::ZeroMaxLength);
        }
        match (&self.doy, &self.inputs.doy) {
            (DoyEncoding::None, Some(name)) => return Err(ContractError::DoyWithoutEncoding(name.clone())),
            (DoyEncoding::Sinusoidal { .. }, None) => return Err(ContractError::EncodingWithoutDoy),
            _ => {}
        }
        if self.classes.is_empty() {
            return Err(ContractError::NoClasses);
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.code == CLASS_NODATA {
                return Err(ContractError::NodataClass(c.name.clone()));
            }
            if self.classes[..i].iter().any(|o| o.code == c.code) {
                return Err(ContractError::DuplicateClass(c.code));
            }
        }
        Ok(())
    }

    /// Mean and std per band, with the defaults filled in.
    pub fn normalisation(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.bands.len();
        let mean = if self.scaling.mean.is_empty() {
            vec![0.0; n]
        } else {
            self.scaling.mean.clone()
        };
        let std = if self.scaling.std.is_empty() {
            vec![1.0; n]
        } else {
            self.scaling.std.clone()
        };
        (mean, std)
    }

    /// For each contract band, its index among `chunk_bands`; an error names the missing band.
    pub fn band_indices(&self, chunk_bands: &[String]) -> Result<Vec<usize>, ContractError> {
        self.bands
            .iter()
            .map(|b| {
                chunk_bands
                    .iter()
                    .position(|c| c == b)
                    .ok_or_else(|| ContractError::MissingBand {
                        band: b.clone(),
                        chunk_bands: chunk_bands.to_vec(),
                    })
            })
            .collect()
    }

    /// Checks a chunk's sensors against `sensors` (when the contract lists any).
    pub fn check_sensors(&self, chunk_sensors: &[Sensor]) -> Result<(), ContractError> {
        if self.sensors.is_empty() {
            return Ok(());
        }
        match chunk_sensors.iter().find(|s| !self.sensors.contains(s)) {
            Some(&sensor) => Err(ContractError::SensorNotAccepted {
                sensor,
                accepted: self.sensors.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Which of `n` observations enter the model (all, unless `n` exceeds `max_length`).
    pub fn select_observations(&self, n: usize) -> Vec<usize> {
        let max = match self.sequence.max_length {
            Some(m) if n > m => m,
            _ => return (0..n).collect(),
        };
        match self.sequence.long_series {
            LongSeries::Latest => (n - max..n).collect(),
            LongSeries::Evenly if max == 1 => vec![n - 1],
            LongSeries::Evenly => (0..max)
                // Integer form of round(i·(n−1)/(max−1)): strictly increasing since n > max.
                .map(|i| (2 * i * (n - 1) + (max - 1)) / (2 * (max - 1)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::species::tree_species;

    pub(crate) fn example() -> ModelContract {
        ModelContract {
            contract_version: CONTRACT_VERSION,
            model_id: "test-lstm".into(),
            description: String::new(),
            bands: ["BLUE", "GREEN", "RED"].map(String::from).to_vec(),
            sensors: Vec::new(),
            inputs: Inputs {
                values: "x".into(),
                doy: None,
                mask: None,
            },
            scaling: Scaling {
                scale: 1e-4,
                offset: 0.0,
                mean: vec![0.05, 0.07, 0.04],
                std: vec![0.02, 0.03, 0.02],
            },
            sequence: Sequence {
                max_length: Some(4),
                padding: PaddingSide::Left,
                pad_value: 0.0,
                long_series: LongSeries::Evenly,
                ignores_padding: false,
            },
            doy: DoyEncoding::None,
            classes: tree_species(),
            output: Output {
                name: "probabilities".into(),
                kind: OutputKind::Probabilities,
            },
        }
    }

    #[test]
    fn json_round_trips_with_documented_spelling() {
        let c = example();
        let j = c.to_json();
        assert!(j.contains("\"padding\": \"left\""), "{j}");
        assert!(j.contains("\"encoding\": \"none\""), "{j}");
        assert_eq!(ModelContract::from_json(&j).unwrap(), c);
        let mut t = example();
        t.doy = DoyEncoding::Sinusoidal { dim: 64 };
        t.inputs.doy = Some("doy".into());
        let j = t.to_json();
        assert!(j.contains("\"encoding\": \"sinusoidal\""), "{j}");
        assert_eq!(ModelContract::from_json(&j).unwrap(), t);
    }

    #[test]
    fn bad_contracts_are_refused_by_name() {
        let e = |c: ModelContract| c.validate().unwrap_err().to_string();
        let mut c = example();
        c.scaling.mean.pop();
        assert!(e(c).contains("'scaling.mean' has 2 values for 3 bands"));
        let mut c = example();
        c.classes[3].code = 255;
        assert!(e(c).contains("code 255"));
        let mut c = example();
        c.classes[3].code = 1;
        assert!(e(c).contains("class code 1 is listed twice"));
        let mut c = example();
        c.doy = DoyEncoding::Sinusoidal { dim: 8 };
        assert!(e(c).contains("needs an 'inputs.doy'"));
        let j = example()
            .to_json()
            .replace("\"contract_version\": 1", "\"contract_version\": 7");
        let err = ModelContract::from_json(&j).unwrap_err().to_string();
        assert!(err.contains("contract version 7 is not supported"), "{err}");
        let j = example().to_json().replace("\"bands\"", "\"bandz\"");
        assert!(ModelContract::from_json(&j).is_err());
    }

    #[test]
    fn sensors_are_optional_checked_and_written_only_when_listed() {
        let j = example().to_json();
        assert!(!j.contains("\"sensors\""), "{j}");
        let mut c = example();
        c.sensors = vec![Sensor::Sen2a, Sensor::Lnd08];
        let j = c.to_json();
        assert!(
            j.contains("\"sensors\": [\n    \"SEN2A\",\n    \"LND08\"\n  ]"),
            "{j}"
        );
        assert_eq!(ModelContract::from_json(&j).unwrap(), c);
        let bad = j.replace("\"LND08\"", "\"LND06\"");
        let e = ModelContract::from_json(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown sensor 'LND06'"), "{e}");
        let mut c = example();
        c.bands.push("REDEDGE1".into());
        c.scaling.mean.push(0.1);
        c.scaling.std.push(0.1);
        c.sensors = vec![Sensor::Sen2b, Sensor::Lnd09];
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "model contract: sensor LND09 has no band REDEDGE1 of 'bands'"
        );
        c.sensors = vec![Sensor::Sen2b, Sensor::Sen2b];
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("SEN2B is listed twice"));
        c.sensors = vec![Sensor::Sen2a, Sensor::Sen2b];
        assert!(c.check_sensors(&[Sensor::Sen2b]).is_ok());
        let e = c
            .check_sensors(&[Sensor::Sen2a, Sensor::Sen2c])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("accepts only SEN2A,SEN2B (its 'sensors') but the chunk holds SEN2C"),
            "{e}"
        );
        c.sensors.clear();
        assert!(c.check_sensors(&[Sensor::Lnd07]).is_ok(), "no list: any sensor");
    }

    #[test]
    fn band_indices_name_the_missing_band() {
        let c = example();
        let chunk: Vec<String> = ["RED", "GREEN", "BLUE", "NIR"].map(String::from).to_vec();
        assert_eq!(c.band_indices(&chunk).unwrap(), vec![2, 1, 0]);
        let landsat: Vec<String> = ["GREEN", "RED"].map(String::from).to_vec();
        let e = c.band_indices(&landsat).unwrap_err().to_string();
        assert!(e.contains("needs band 'BLUE'"), "{e}");
    }

    /// The committed fixture models' contracts (copies of their ONNX metadata, written by
    /// `models/treesits_models/train.py`) must parse here exactly as `predict` will parse them.
    #[test]
    fn fixture_contracts_parse() {
        use crate::species::truth_classes;
        let s2: Vec<String> = [
            "BLUE", "GREEN", "RED", "REDEDGE1", "REDEDGE2", "REDEDGE3", "BROADNIR", "NIR", "SWIR1", "SWIR2",
        ]
        .map(String::from)
        .to_vec();
        let lstm =
            ModelContract::from_json(include_str!("../../../models/fixtures/lstm.contract.json")).unwrap();
        let transformer =
            ModelContract::from_json(include_str!("../../../models/fixtures/transformer.contract.json"))
                .unwrap();
        for c in [&lstm, &transformer] {
            assert_eq!(c.bands, s2);
            assert_eq!(c.classes, truth_classes());
            assert_eq!(c.scaling.scale, 1e-4);
            assert_eq!(c.scaling.mean.len(), 10);
            assert!(c.scaling.std.iter().all(|s| *s > 0.0));
            assert_eq!(c.output.kind, OutputKind::Probabilities);
            assert_eq!(c.sequence.long_series, LongSeries::Evenly);
        }
        assert_eq!(lstm.inputs.values, "values");
        assert_eq!((lstm.inputs.doy.clone(), lstm.inputs.mask.clone()), (None, None));
        assert_eq!(lstm.doy, DoyEncoding::None);
        assert_eq!(lstm.sequence.padding, PaddingSide::Left);
        assert_eq!(lstm.sequence.max_length, Some(64));
        // Written before `ignores_padding` existed: read as false (predict never pads them).
        assert!(!lstm.sequence.ignores_padding && !transformer.sequence.ignores_padding);
        assert_eq!(transformer.inputs.doy.as_deref(), Some("doy"));
        assert_eq!(transformer.inputs.mask.as_deref(), Some("mask"));
        assert_eq!(transformer.doy, DoyEncoding::Sinusoidal { dim: 32 });
        assert_eq!(transformer.sequence.padding, PaddingSide::Right);
        assert_eq!(transformer.sequence.max_length, Some(128));
        // both were normalised with the same training-set statistics
        assert_eq!(lstm.scaling, transformer.scaling);
    }

    #[test]
    fn long_series_are_thinned_as_documented() {
        let mut c = example();
        assert_eq!(c.select_observations(3), vec![0, 1, 2]);
        assert_eq!(c.select_observations(4), vec![0, 1, 2, 3]);
        // round(i·9/3) for i = 0..4
        assert_eq!(c.select_observations(10), vec![0, 3, 6, 9]);
        // round(i·6/3) = 0, 2, 4, 6; with n = 8: round(i·7/3) = 0, 2.33→2, 4.67→5, 7
        assert_eq!(c.select_observations(8), vec![0, 2, 5, 7]);
        c.sequence.long_series = LongSeries::Latest;
        assert_eq!(c.select_observations(10), vec![6, 7, 8, 9]);
        c.sequence.max_length = None;
        assert_eq!(c.select_observations(10).len(), 10);
    }
}
