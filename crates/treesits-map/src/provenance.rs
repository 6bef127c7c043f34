//! What a map was made from — the model (id, SHA-256 of its file), the acquisitions' date range, the
//! sensors actually read, the QAI screen — and the software that made it, as the dataset metadata
//! every product carries (`TREESITS_*` keys, see [`treesits_core::names`]) and the STAC Item reads.

use treesits_core::contract::ModelContract;
use treesits_core::names::provenance_keys as keys;
use treesits_core::prediction::PredictionMetadata;
use treesits_core::{Date, Sensor};

/// The treesits version that writes the products (the workspace's crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Provenance of one tile, or of a mosaic of tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Model ids; several only when tiles of models with one class table are mapped together.
    pub model_ids: Vec<String>,
    /// SHA-256 of the model files; empty when the predictions predate the key.
    pub model_sha256: Vec<String>,
    pub date_start: Date,
    pub date_end: Date,
    /// Sensors of the acquisitions read: the chunk's order for a tile, code order for a mosaic.
    pub sensors: Vec<Sensor>,
    /// QAI screens (one, unless tiles were extracted with different ones).
    pub qai_screens: Vec<String>,
    /// The model's file name and contract as predict recorded them (the first tile's, for a
    /// mosaic); `None` for predictions of earlier builds.
    pub model_file: Option<String>,
    pub model_contract: Option<ModelContract>,
}

fn push_new<T: PartialEq + Clone>(v: &mut Vec<T>, x: &T) {
    if !v.contains(x) {
        v.push(x.clone());
    }
}

impl Provenance {
    /// What a tile's prediction chunks say they were made from.
    pub fn of_tile(meta: &PredictionMetadata) -> Provenance {
        let src = &meta.source;
        Provenance {
            model_ids: vec![meta.model_id.clone()],
            model_sha256: meta.model_sha256.iter().cloned().collect(),
            date_start: src.date_start,
            date_end: src.date_end,
            sensors: src.sensors.clone(),
            qai_screens: vec![src.qai_screen.clone()],
            model_file: meta.model_file.clone(),
            model_contract: meta.model_contract.clone(),
        }
    }

    /// The provenance of a mosaic: the overall date range, the union of the sensors (in code
    /// order), every distinct model and screen; `None` for no tiles.
    pub fn union<'a>(tiles: impl IntoIterator<Item = &'a Provenance>) -> Option<Provenance> {
        let mut it = tiles.into_iter();
        let mut out = it.next()?.clone();
        for t in it {
            out.date_start = out.date_start.min(t.date_start);
            out.date_end = out.date_end.max(t.date_end);
            for s in &t.sensors {
                push_new(&mut out.sensors, s);
            }
            for m in &t.model_ids {
                push_new(&mut out.model_ids, m);
            }
            for m in &t.model_sha256 {
                push_new(&mut out.model_sha256, m);
            }
            for q in &t.qai_screens {
                push_new(&mut out.qai_screens, q);
            }
        }
        out.sensors.sort_by_key(|s| s.code());
        Some(out)
    }

    /// The sensors' names, comma-separated (`SEN2A,SEN2B`).
    pub fn sensor_list(&self) -> String {
        self.sensors
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The dataset metadata items; distinct values of a mosaic's tiles are joined by `;`, and
    /// `TREESITS_MODEL_SHA256` is left out when no tile's predictions record it.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut m = vec![
            (keys::MODEL_ID.to_string(), self.model_ids.join(";")),
            (keys::VERSION.to_string(), VERSION.to_string()),
            (
                keys::DATES.to_string(),
                format!("{}/{}", self.date_start, self.date_end),
            ),
            (keys::SENSORS.to_string(), self.sensor_list()),
            (keys::QAI_SCREEN.to_string(), self.qai_screens.join(";")),
        ];
        if !self.model_sha256.is_empty() {
            m.insert(1, (keys::MODEL_SHA256.to_string(), self.model_sha256.join(";")));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::chunk::ChunkMetadata;
    use treesits_core::species::tree_species;

    fn tile(sensors: Vec<Sensor>, start: &str, end: &str, sha: Option<&str>) -> Provenance {
        Provenance::of_tile(&PredictionMetadata {
            source: ChunkMetadata {
                sensors,
                date_start: start.parse().unwrap(),
                date_end: end.parse().unwrap(),
                ..ChunkMetadata::example()
            },
            model_id: "m1".into(),
            model_sha256: sha.map(str::to_string),
            model_file: None,
            model_contract: None,
            classes: tree_species(),
            probabilities: false,
            uncertainty: None,
        })
    }

    #[test]
    fn a_mosaic_spans_its_tiles_dates_and_sensors() {
        let a = tile(vec![Sensor::Sen2b], "2021-03-02", "2021-10-01", Some("aa"));
        let b = tile(
            vec![Sensor::Sen2b, Sensor::Sen2a],
            "2021-01-05",
            "2021-09-30",
            Some("aa"),
        );
        let u = Provenance::union([&a, &b]).unwrap();
        assert_eq!(u.sensors, vec![Sensor::Sen2a, Sensor::Sen2b]);
        assert_eq!(
            (u.date_start.to_string(), u.date_end.to_string()),
            ("2021-01-05".into(), "2021-10-01".into())
        );
        let m: std::collections::BTreeMap<_, _> = u.metadata().into_iter().collect();
        assert_eq!(m["TREESITS_SENSORS"], "SEN2A,SEN2B");
        assert_eq!(m["TREESITS_DATES"], "2021-01-05/2021-10-01");
        assert_eq!(m["TREESITS_MODEL_SHA256"], "aa");
        assert_eq!(m["TREESITS_MODEL_ID"], "m1");
        assert_eq!(m["TREESITS_VERSION"], VERSION);
        assert_eq!(m["TREESITS_QAI_SCREEN"], "nodata,cloud");
        assert!(Provenance::union(std::iter::empty()).is_none());
    }

    #[test]
    fn predictions_without_a_model_checksum_leave_the_key_out() {
        let old = tile(vec![Sensor::Sen2a], "2021-01-01", "2021-12-31", None);
        assert!(old.metadata().iter().all(|(k, _)| k != "TREESITS_MODEL_SHA256"));
    }
}
