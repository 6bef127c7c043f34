//! A 6-band model maps a Landsat + Sentinel-2 series: chunks the real `cube-extract --model` made
//! from a synthetic cube with both families, predicted by `common6.onnx`, every pixel's probabilities
//! and class recomputed here from the chunk and the contract (the model's weights are a closed
//! formula, models/testdata/make_test_models.py).
//!
//! Needs the ONNX Runtime library: run after `source scripts/env.sh` (scripts/test does).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use treesits_core::chunk::{read_chunks, ChunkColumns, ChunkMetadata};
use treesits_core::contract::{ModelContract, OutputKind, PaddingSide};
use treesits_core::grid::PrjForm;
use treesits_core::prediction::{PredictionColumns, PredictionMetadata, PredictionReader};
use treesits_core::species::CLASS_NODATA;
use treesits_core::Sensor;
use treesits_testkit::cli::{s, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("predict", env!("CARGO_BIN_EXE_predict"));

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/testdata")
        .join(name)
}

/// The real `cube-extract` binary, built next to `predict` (a run limited to this package builds it).
fn cube_extract() -> &'static Path {
    static BIN_PATH: OnceLock<PathBuf> = OnceLock::new();
    BIN_PATH.get_or_init(|| {
        let path =
            Path::new(TOOL.bin).with_file_name(format!("cube-extract{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            let release = Path::new(TOOL.bin).parent().unwrap().ends_with("release");
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "--quiet", "-p", "cube-extract"]);
            if release {
                cargo.arg("--release");
            }
            let st = cargo.status().unwrap();
            assert!(st.success() && path.exists(), "building cube-extract failed");
        }
        path
    })
}

/// The test models' weight formula (models/testdata/make_test_models.py).
fn weight(seed: usize, i: usize, j: usize, scale: f64) -> f64 {
    (((i * 31 + j * 17 + seed * 7) % 13) as f64 - 6.0) * scale
}

/// `common6`'s class probabilities for one pixel's observations (band values in the chunk's band
/// order): logits = x_last·W1 + Σ_t x_t·W2 + b, W1 = weight(12, ·, ·, 0.05), W2 = weight(13, ·, ·,
/// 0.01), b = weight(14, 0, ·, 0.1); x = ((raw · scale + offset) − mean) / std; then softmax.
fn expected(c: &ModelContract, band_names: &[String], obs: &[Vec<i16>]) -> Vec<f64> {
    assert_eq!(c.sequence.padding, PaddingSide::Left);
    assert_eq!(c.sequence.max_length, None);
    assert_eq!(c.output.kind, OutputKind::Logits);
    let idx: Vec<usize> = c
        .bands
        .iter()
        .map(|b| band_names.iter().position(|n| n == b).unwrap())
        .collect();
    let (mean, std) = c.normalisation();
    let x: Vec<Vec<f64>> = obs
        .iter()
        .map(|o| {
            (0..idx.len())
                .map(|b| {
                    let v = (f64::from(o[idx[b]]) * c.scaling.scale + c.scaling.offset - mean[b]) / std[b];
                    f64::from(v as f32)
                })
                .collect()
        })
        .collect();
    let nb = idx.len();
    let last = x.last().unwrap();
    let total: Vec<f64> = (0..nb).map(|b| x.iter().map(|v| v[b]).sum()).collect();
    let logits: Vec<f64> = (0..c.classes.len())
        .map(|j| {
            weight(14, 0, j, 0.1)
                + (0..nb)
                    .map(|b| last[b] * weight(12, b, j, 0.05) + total[b] * weight(13, b, j, 0.01))
                    .sum::<f64>()
        })
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

fn read_prediction_file(p: &Path) -> (PredictionMetadata, Vec<PredictionColumns>) {
    let bytes = std::fs::read(p).unwrap();
    let r = PredictionReader::new(bytes.as_slice()).unwrap();
    let meta = r.metadata().clone();
    (meta, r.map(|b| b.unwrap()).collect())
}

#[test]
fn a_six_band_model_maps_a_landsat_and_sentinel2_series() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 5,
        tiles: 1,
        tile_pixels: 40,
        dates: 14,
        year: 2021,
        sensors: vec![Sensor::Sen2a, Sensor::Lnd08, Sensor::Sen2b, Sensor::Lnd09],
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
        ..SynthConfig::default()
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile_dir = dir.path().join("synth/cube").join(m.tiles[0].tile_id.to_string());
    let model = testdata("common6.onnx");
    let chunks = dir.path().join("chunks");
    // The model's contract chooses the bands and the sensors (all four).
    TOOL.ok(&Command::new(cube_extract())
        .args([
            "--tile",
            s(&tile_dir),
            "--out-dir",
            s(&chunks),
            "--model",
            s(&model),
        ])
        .args(["--chunk-rows", "20", "-q"])
        .output()
        .unwrap());
    let out = dir.path().join("pred");
    TOOL.ok(&TOOL.run(&[
        "--model",
        s(&model),
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--device",
        "cpu",
        "--probabilities",
        "--batch-size",
        "32",
    ]));
    let c = ModelContract::from_json(&std::fs::read_to_string(testdata("common6.contract.json")).unwrap())
        .unwrap();
    let k = c.classes.len();
    let mut names: Vec<String> = std::fs::read_dir(&chunks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2);
    let (mut mixed, mut pixels, mut classes) = (0, 0, std::collections::BTreeSet::new());
    for name in &names {
        let (cm, cb): (ChunkMetadata, Vec<ChunkColumns>) =
            read_chunks(std::fs::File::open(chunks.join(name)).unwrap()).unwrap();
        assert_eq!(cm.band_names, ["BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2"]);
        let (pm, pb) = read_prediction_file(&out.join(name.replace(".arrows", ".pred.arrows")));
        assert_eq!(pm.model_id, "test-common6");
        assert_eq!(pm.classes, c.classes);
        for (chunk, pred) in cb.iter().zip(&pb) {
            let probs = pred.probabilities.as_ref().expect("--probabilities");
            for i in 0..chunk.pixels() {
                pixels += 1;
                let range = chunk.range(i);
                if range.is_empty() {
                    assert_eq!(pred.class[i], CLASS_NODATA);
                    continue;
                }
                let sensors: Vec<Sensor> = range
                    .clone()
                    .map(|j| Sensor::from_code(chunk.sensor[j]).unwrap())
                    .collect();
                mixed += usize::from(
                    sensors.iter().any(|s| s.is_sentinel2()) && sensors.iter().any(|s| !s.is_sentinel2()),
                );
                let obs: Vec<Vec<i16>> = range
                    .map(|j| chunk.bands.iter().map(|b| b[j]).collect())
                    .collect();
                let p = expected(&c, &cm.band_names, &obs);
                for j in 0..k {
                    let got = f64::from(probs[i * k + j]);
                    assert!(
                        (got - p[j] * 10_000.0).abs() <= 1.0,
                        "pixel ({}, {}) class {j}: {got} vs {:.2}",
                        chunk.row[i],
                        chunk.col[i],
                        p[j] * 10_000.0
                    );
                }
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
                if p[order[0]] - p[order[1]] > 1e-5 {
                    assert_eq!(pred.class[i], c.classes[order[0]].code, "pixel {i}");
                }
                classes.insert(pred.class[i]);
            }
        }
    }
    assert_eq!(pixels, 1600);
    assert!(
        mixed > 1000,
        "pixels whose series mix Landsat and Sentinel-2: {mixed}"
    );
    assert!(classes.len() > 1, "the model must tell pixels apart: {classes:?}");
}

#[test]
fn a_model_refuses_chunks_of_sensors_its_contract_does_not_list() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 6,
        tiles: 1,
        tile_pixels: 20,
        dates: 4,
        sensors: vec![Sensor::Lnd07],
        ..SynthConfig::default()
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile_dir = dir.path().join("synth/cube").join(m.tiles[0].tile_id.to_string());
    let chunks = dir.path().join("chunks");
    TOOL.ok(&Command::new(cube_extract())
        .args([
            "--tile",
            s(&tile_dir),
            "--out-dir",
            s(&chunks),
            "--sensors",
            "LND07",
            "-q",
        ])
        .output()
        .unwrap());
    let out = dir.path().join("pred");
    let model = testdata("common6.onnx");
    let r = TOOL.run(&[
        "--model",
        s(&model),
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--device",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("accepts only SEN2A,SEN2B,LND08,LND09 (its 'sensors') but the chunk holds LND07"),
        "{err}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}
