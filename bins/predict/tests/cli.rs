//! `predict` run as a program on chunks the real `cube-extract` made from synthetic cubes: every pixel's
//! class, probabilities and uncertainty recomputed here from the chunk and the contract; streams;
//! invariance to batch size and threads; errors by message and exit code; accuracy of the trained
//! fixtures when they are there.
//!
//! Needs the ONNX Runtime library: run after `source scripts/env.sh` (scripts/test does).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use treesits_core::chunk::{read_chunks, ChunkColumns, ChunkMetadata};
use treesits_core::contract::{LongSeries, ModelContract, OutputKind, PaddingSide};
use treesits_core::grid::PrjForm;
use treesits_core::prediction::{PredictionColumns, PredictionMetadata, PredictionReader, PROB_NODATA};
use treesits_core::species::CLASS_NODATA;
use treesits_core::{Date, Sensor};
use treesits_testkit::cli::{assert_snapshot, s, Tool};
use treesits_testkit::models;
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("predict", env!("CARGO_BIN_EXE_predict"));

struct Cube {
    dir: tempfile::TempDir,
    tile_dir: PathBuf,
    tile: String,
}

fn synth(seed: u64, size: usize, dates: usize, sensors: Vec<Sensor>) -> Cube {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed,
        tiles: 1,
        tile_pixels: size,
        dates,
        year: 2021,
        sensors,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
        ..SynthConfig::default()
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile = m.tiles[0].tile_id.to_string();
    let tile_dir = dir.path().join("synth/cube").join(&tile);
    Cube { dir, tile_dir, tile }
}

impl Cube {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cube-extract --out-dir <name>` with extra arguments; returns the directory.
    fn extract(&self, name: &str, extra: &[&str]) -> PathBuf {
        let out = self.path(name);
        let mut args = vec!["--tile", s(&self.tile_dir), "--out-dir", s(&out), "-q"];
        args.extend(extra);
        TOOL.ok(&Command::new(TOOL.sibling("cube-extract"))
            .args(&args)
            .output()
            .unwrap());
        out
    }

    /// `cube-extract --out -` with extra arguments: the stream's bytes.
    fn extract_stream(&self, extra: &[&str]) -> Vec<u8> {
        let mut args = vec!["--tile", s(&self.tile_dir), "--out", "-", "-q"];
        args.extend(extra);
        let out = Command::new(TOOL.sibling("cube-extract"))
            .args(&args)
            .output()
            .unwrap();
        TOOL.ok(&out);
        out.stdout
    }
}

fn predict(args: &[&str]) -> Output {
    predict_with(args, None, &[])
}

/// Runs predict with `stdin` bytes and environment changes (`None` value: removed).
fn predict_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = TOOL.command();
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        // Write from a thread so a child that stops reading early cannot block the test.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait_with_output().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_chunk_file(p: &Path) -> (ChunkMetadata, Vec<ChunkColumns>) {
    read_chunks(std::fs::File::open(p).unwrap()).unwrap()
}

fn read_predictions(bytes: &[u8]) -> (PredictionMetadata, Vec<PredictionColumns>) {
    let r = PredictionReader::new(bytes).unwrap();
    let meta = r.metadata().clone();
    (meta, r.map(|b| b.unwrap()).collect())
}

fn read_prediction_file(p: &Path) -> (PredictionMetadata, Vec<PredictionColumns>) {
    read_predictions(&std::fs::read(p).unwrap())
}

/// The contract the generator embedded in `model` (also written next to it as JSON).
fn load_contract(model: &str) -> ModelContract {
    let json = std::fs::read_to_string(models::testdata(&model.replace(".onnx", ".contract.json"))).unwrap();
    ModelContract::from_json(&json).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The expected output, recomputed from a pixel's observations (independently of treesits-infer).

/// Which of `n` observations a contract keeps: all, the latest `max`, or `max` evenly spaced
/// positions round(i·(n−1)/(max−1)) (as docs/model-contract.md states the rule).
fn thin(n: usize, max: Option<usize>, rule: LongSeries) -> Vec<usize> {
    match max {
        Some(m) if n > m => match rule {
            LongSeries::Latest => (n - m..n).collect(),
            LongSeries::Evenly => (0..m)
                .map(|i| (i as f64 * (n - 1) as f64 / (m - 1) as f64).round() as usize)
                .collect(),
        },
        _ => (0..n).collect(),
    }
}

/// One pixel's observations: (days since epoch, band values in the chunk's band order).
type Obs = (i32, Vec<i16>);

/// The class probabilities the test model `name` gives for `obs`.
fn expected_probabilities(name: &str, c: &ModelContract, band_names: &[String], obs: &[Obs]) -> Vec<f64> {
    let idx: Vec<usize> = c
        .bands
        .iter()
        .map(|b| band_names.iter().position(|n| n == b).unwrap())
        .collect();
    let (mean, std) = c.normalisation();
    let scaled = |o: &Obs| -> Vec<f64> {
        (0..idx.len())
            .map(|b| {
                let v = (f64::from(o.1[idx[b]]) * c.scaling.scale + c.scaling.offset - mean[b]) / std[b];
                f64::from(v as f32)
            })
            .collect()
    };
    let sel: Vec<&Obs> = thin(obs.len(), c.sequence.max_length, c.sequence.long_series)
        .into_iter()
        .map(|i| &obs[i])
        .collect();
    let nb = idx.len();
    let k = c.classes.len();
    let x: Vec<Vec<f64>> = sel.iter().map(|o| scaled(o)).collect();
    let sum = |extra: f64| -> Vec<f64> {
        (0..nb)
            .map(|b| x.iter().map(|v| v[b]).sum::<f64>() + extra)
            .collect()
    };
    let mut logits = vec![0.0; k];
    match name {
        "linear_left" => {
            // Left padding: the last step is the latest observation; padding 0 adds nothing.
            assert_eq!(c.sequence.padding, PaddingSide::Left);
            let (last, total) = (x.last().unwrap(), sum(0.0));
            for (j, l) in logits.iter_mut().enumerate() {
                *l = models::weight(3, 0, j, 0.1)
                    + (0..nb)
                        .map(|b| {
                            last[b] * models::weight(1, b, j, 0.05) + total[b] * models::weight(2, b, j, 0.01)
                        })
                        .sum::<f64>();
            }
        }
        "doy_right_mask" => {
            // Right padding: step 0 is the first kept observation; masked steps count for nothing.
            assert_eq!(c.sequence.padding, PaddingSide::Right);
            let (first, total) = (&x[0], sum(0.0));
            let doy: f64 = sel
                .iter()
                .map(|o| f64::from(Date::from_days_since_epoch(o.0).day_of_year()))
                .sum();
            for (j, l) in logits.iter_mut().enumerate() {
                *l = models::weight(7, 0, j, 0.1)
                    + doy / 366.0 * models::weight(6, 0, j, 0.05)
                    + (0..nb)
                        .map(|b| {
                            first[b] * models::weight(4, b, j, 0.5) + total[b] * models::weight(5, b, j, 0.25)
                        })
                        .sum::<f64>();
            }
        }
        "fixed_latest" => {
            // Fixed length 5, left padding with 0.5: padded steps enter the sum.
            let pads = 5 - x.len();
            let (last, total) = (
                x.last().unwrap(),
                sum(pads as f64 * f64::from(c.sequence.pad_value)),
            );
            for (j, l) in logits.iter_mut().enumerate() {
                *l = models::weight(10, 0, j, 0.1)
                    + (0..nb)
                        .map(|b| {
                            last[b] * models::weight(8, b, j, 1.0) + total[b] * models::weight(9, b, j, 0.2)
                        })
                        .sum::<f64>();
            }
        }
        "bilstm" => {
            // No padding reaches the model: both directions run over exactly the kept observations.
            assert_eq!(c.sequence.padding, PaddingSide::Left);
            assert!(!c.sequence.ignores_padding);
            let h = bilstm_final_states(&x);
            for (j, l) in logits.iter_mut().enumerate() {
                *l = models::weight(51, 0, j, 0.1)
                    + (0..h.len())
                        .map(|i| h[i] * models::weight(50, i, j, 0.3))
                        .sum::<f64>();
            }
        }
        _ => unreachable!(),
    }
    // Both output kinds end in a softmax (in the graph, or in predict for logits).
    assert_eq!(
        c.output.kind == OutputKind::Logits,
        !["doy_right_mask", "bilstm"].contains(&name)
    );
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|v| v / total).collect()
}

/// The test model `bilstm`'s LSTM (models/testdata/make_test_models.py), run in f64 over one
/// series `x` (steps × bands): [forward final state ‖ backward final state], the ONNX LSTM's
/// equations with gate order i, o, f, c.
fn bilstm_final_states(x: &[Vec<f64>]) -> Vec<f64> {
    const H: usize = 5;
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    // Weights as stored (float32).
    let w = |seed: usize, i: usize, j: usize, scale: f64| f64::from(models::weight(seed, i, j, scale) as f32);
    let mut out = Vec::new();
    for d in 0..2 {
        let (mut h, mut cell) = ([0.0; H], [0.0; H]);
        let steps: Vec<&Vec<f64>> = if d == 0 {
            x.iter().collect()
        } else {
            x.iter().rev().collect()
        };
        for xt in steps {
            // gates[g·H + u]: Xt·W[d]ᵀ + Ht−1·R[d]ᵀ + Wb[d] + Rb[d]
            let gates: Vec<f64> = (0..4 * H)
                .map(|r| {
                    (0..xt.len()).map(|b| xt[b] * w(20 + d, r, b, 0.08)).sum::<f64>()
                        + (0..H).map(|u| h[u] * w(30 + d, r, u, 0.1)).sum::<f64>()
                        + w(40 + d, 0, r, 0.05)
                        + w(40 + d, 0, 4 * H + r, 0.05)
                })
                .collect();
            for u in 0..H {
                let (i, o) = (sigmoid(gates[u]), sigmoid(gates[H + u]));
                let (f, g) = (sigmoid(gates[2 * H + u]), gates[3 * H + u].tanh());
                cell[u] = f * cell[u] + i * g;
                h[u] = o * cell[u].tanh();
            }
        }
        out.extend(h);
    }
    out
}

/// Checks one prediction batch against the chunk batch it came from, pixel by pixel.
/// Returns (pixels with observations, pixels without).
fn check_batch(
    name: &str,
    c: &ModelContract,
    band_names: &[String],
    chunk: &ChunkColumns,
    pred: &PredictionColumns,
    uncertainty: &str,
) -> (usize, usize) {
    let k = c.classes.len();
    assert_eq!(pred.row, chunk.row, "rows in input order");
    assert_eq!(pred.col, chunk.col);
    let probs = pred.probabilities.as_ref().expect("--probabilities");
    let unc = pred.uncertainty.as_ref().expect("--uncertainty");
    let (mut full, mut empty) = (0, 0);
    for i in 0..chunk.pixels() {
        let obs: Vec<Obs> = chunk
            .range(i)
            .map(|j| (chunk.date[j], chunk.bands.iter().map(|b| b[j]).collect()))
            .collect();
        if obs.is_empty() {
            assert_eq!(
                (pred.class[i], pred.prob[i], unc[i]),
                (CLASS_NODATA, PROB_NODATA, PROB_NODATA)
            );
            assert!(probs[i * k..(i + 1) * k].iter().all(|&p| p == PROB_NODATA));
            empty += 1;
            continue;
        }
        full += 1;
        let p = expected_probabilities(name, c, band_names, &obs);
        let got = &probs[i * k..(i + 1) * k];
        for j in 0..k {
            let want = p[j] * 10_000.0;
            assert!(
                (f64::from(got[j]) - want).abs() <= 1.0,
                "{name} pixel ({}, {}) class {j}: {} vs {want:.2}",
                chunk.row[i],
                chunk.col[i],
                got[j]
            );
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
        let best = if p[order[0]] - p[order[1]] < 1e-5 {
            // A near tie: either of the two is right.
            let code = pred.class[i];
            assert!(code == c.classes[order[0]].code || code == c.classes[order[1]].code);
            order
                .iter()
                .position(|&j| c.classes[j].code == code)
                .map(|r| order[r])
                .unwrap()
        } else {
            order[0]
        };
        assert_eq!(pred.class[i], c.classes[best].code, "{name} pixel {i}");
        assert!((f64::from(pred.prob[i]) - p[best] * 10_000.0).abs() <= 1.0);
        let u = match uncertainty {
            "margin" => 1.0 - (p[order[0]] - p[order[1]]),
            _ => -p.iter().filter(|v| **v > 0.0).map(|v| v * v.ln()).sum::<f64>() / (k as f64).ln(),
        };
        assert!(
            (f64::from(unc[i]) - u * 10_000.0).abs() <= 2.0,
            "{name} {uncertainty} pixel {i}: {} vs {:.2}",
            unc[i],
            u * 10_000.0
        );
    }
    (full, empty)
}

/// A synthetic Sentinel-2 tile (16 dates; 40 × 40 pixels) extracted in 4 chunks: the whole year
/// (series up to 11 observations, so long ones are thinned) and, as `winter/`, January to March
/// (most pixels under cloud or snow on every date: the nodata path).
fn sentinel_chunks() -> (Arc<Cube>, PathBuf) {
    static CHUNKS: OnceLock<(Arc<Cube>, PathBuf)> = OnceLock::new();
    CHUNKS
        .get_or_init(|| {
            let cube = synth(7, 40, 16, vec![Sensor::Sen2a, Sensor::Sen2b]);
            let chunks = cube.extract("chunks", &["--chunk-rows", "10"]);
            cube.extract(
                "winter",
                &[
                    "--chunk-rows",
                    "10",
                    "--start",
                    "2021-01-01",
                    "--end",
                    "2021-03-31",
                ],
            );
            (Arc::new(cube), chunks)
        })
        .clone()
}

#[test]
fn every_pixel_equals_the_model_recomputed_from_its_chunk_and_contract() {
    let (cube, year) = sentinel_chunks();
    let (mut thinned, mut empty_total) = (0, 0);
    for (name, uncertainty) in [
        ("linear_left", "margin"),
        ("doy_right_mask", "entropy"),
        ("fixed_latest", "margin"),
    ] {
        let model = models::testdata(&format!("{name}.onnx"));
        let c = load_contract(&format!("{name}.onnx"));
        for chunks in [year.clone(), cube.path("winter")] {
            let inputs = files_in(&chunks);
            assert_eq!(inputs.len(), 4);
            let out = cube.path(&format!("pred_{name}"));
            let _ = std::fs::remove_dir_all(&out);
            let r = predict(&[
                "--model",
                s(&model),
                "--input",
                s(&chunks),
                "--out-dir",
                s(&out),
                "--device",
                "cpu",
                "--probabilities",
                "--uncertainty",
                uncertainty,
                "--batch-size",
                "64",
                "-v",
            ]);
            TOOL.ok(&r);
            let log = String::from_utf8_lossy(&r.stderr);
            assert_eq!(
                log.matches(" of 4: ").count(),
                4,
                "one debug line per chunk: {log}"
            );
            assert!(r.stdout.is_empty());
            let names = files_in(&out);
            let want: Vec<String> = inputs
                .iter()
                .map(|n| n.replace(".arrows", ".pred.arrows"))
                .collect();
            assert_eq!(names, want);
            let (mut full, mut empty) = (0, 0);
            for (input, output) in inputs.iter().zip(&names) {
                let (cm, cb) = read_chunk_file(&chunks.join(input));
                let (pm, pb) = read_prediction_file(&out.join(output));
                assert_eq!(pm.source, cm, "{output}: the input chunk's metadata");
                assert_eq!(pm.model_id, c.model_id);
                assert_eq!(pm.classes, c.classes);
                assert!(pm.probabilities);
                assert_eq!(pm.uncertainty.map(|u| u.name()), Some(uncertainty));
                assert_eq!(pb.len(), cb.len(), "one prediction batch per chunk batch");
                for (chunk, pred) in cb.iter().zip(&pb) {
                    let (f, e) = check_batch(name, &c, &cm.band_names, chunk, pred, uncertainty);
                    full += f;
                    empty += e;
                    if let Some(max) = c.sequence.max_length {
                        thinned += (0..chunk.pixels())
                            .filter(|&i| chunk.range(i).len() > max)
                            .count();
                    }
                }
            }
            assert_eq!(full + empty, 1600);
            assert!(full > 500, "{name}: {full} pixels with observations");
            empty_total += empty;
        }
    }
    assert!(
        empty_total > 1000,
        "pixels without observations (nodata path): {empty_total}"
    );
    assert!(thinned > 1000, "long series must be thinned ({thinned} pixels)");
}

/// Issue 21: a bidirectional LSTM reads padding in both directions, so predict must never pad it.
/// At batch sizes 1, 7, 64 and 4096 (more than a chunk) every pixel's class and probabilities are
/// the same, and equal to the LSTM recomputed here over the pixel's exact series (no padding).
#[test]
fn a_bidirectional_lstm_gives_the_same_answers_at_every_batch_size() {
    let (cube, chunks) = sentinel_chunks();
    let model = models::testdata("bilstm.onnx");
    let c = load_contract("bilstm.onnx");
    let mut runs: Vec<Vec<PredictionColumns>> = Vec::new();
    for batch in ["1", "7", "64", "4096"] {
        let out = cube.path(&format!("pred_bilstm_{batch}"));
        let r = predict(&[
            "--model",
            s(&model),
            "--input",
            s(&chunks),
            "--out-dir",
            s(&out),
            "--device",
            "cpu",
            "--probabilities",
            "--uncertainty",
            "margin",
            "--batch-size",
            batch,
            "-v",
        ]);
        TOOL.ok(&r);
        let log = String::from_utf8_lossy(&r.stderr);
        let chunk_lines: Vec<&str> = log.lines().filter(|l| l.contains("% padding)")).collect();
        assert_eq!(chunk_lines.len(), 4, "{log}");
        assert!(
            chunk_lines.iter().all(|l| l.contains("(0% padding)")),
            "no padding at all: {log}"
        );
        let mut preds = Vec::new();
        let mut full = 0;
        for n in files_in(&chunks) {
            let (cm, cb) = read_chunk_file(&chunks.join(&n));
            let (_, pb) = read_prediction_file(&out.join(n.replace(".arrows", ".pred.arrows")));
            for (chunk, pred) in cb.iter().zip(&pb) {
                full += check_batch("bilstm", &c, &cm.band_names, chunk, pred, "margin").0;
            }
            preds.extend(pb);
        }
        assert!(full > 500, "{full} pixels with observations");
        runs.push(preds);
    }
    // Two runs with the default batch size write the same bytes (nothing follows free memory).
    let default_run = |name: &str| -> Vec<Vec<u8>> {
        let out = cube.path(name);
        TOOL.ok(&predict(&[
            "--model",
            s(&model),
            "--input",
            s(&chunks),
            "--out-dir",
            s(&out),
            "--device",
            "cpu",
            "--probabilities",
        ]));
        files_in(&out)
            .iter()
            .map(|n| std::fs::read(out.join(n)).unwrap())
            .collect()
    };
    assert_eq!(default_run("pred_bilstm_a"), default_run("pred_bilstm_b"));
    for (batch, run) in ["7", "64", "4096"].iter().zip(&runs[1..]) {
        for (a, b) in runs[0].iter().zip(run) {
            assert_eq!(a.class, b.class, "classes at batch size {batch} vs 1");
            let (pa, pb) = (
                a.probabilities.as_ref().unwrap(),
                b.probabilities.as_ref().unwrap(),
            );
            let worst = pa.iter().zip(pb).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
            assert!(
                worst <= 1,
                "probabilities at batch size {batch} vs 1 differ by {worst} storage steps"
            );
        }
    }
}

#[test]
fn stdin_and_stdout_streams_equal_per_file_output_whatever_the_batch_size_and_threads() {
    let (cube, chunks) = sentinel_chunks();
    let model = models::testdata("doy_right_mask.onnx");
    let base = [
        "--model",
        s(&model),
        "--device",
        "cpu",
        "--probabilities",
        "--uncertainty",
        "entropy",
    ];
    let run = |input: &str, stdin: Option<&[u8]>, extra: &[&str]| -> Output {
        let mut args = base.to_vec();
        args.extend(["--input", input]);
        args.extend(extra);
        let r = predict_with(&args, stdin, &[]);
        TOOL.ok(&r);
        r
    };
    // Per file, batches of 7 pixels on one thread.
    let files = cube.path("pred_files");
    run(
        s(&chunks),
        None,
        &["--out-dir", s(&files), "--batch-size", "7", "--threads", "1"],
    );
    let mut per_file: Vec<PredictionColumns> = Vec::new();
    for n in files_in(&files) {
        per_file.extend(read_prediction_file(&files.join(n)).1);
    }
    assert_eq!(per_file.len(), 4);

    // The same tile through a pipe: cube-extract --out - | predict --input - --out -.
    let stream = cube.extract_stream(&["--chunk-rows", "10"]);
    let r = run(
        "-",
        Some(&stream),
        &["--out", "-", "--batch-size", "1000", "--threads", "2"],
    );
    let (meta, batches) = read_predictions(&r.stdout);
    assert_eq!(meta.source.chunk_index, None);
    assert_eq!(meta.source.tile_id.to_string(), cube.tile);
    assert_eq!(
        batches, per_file,
        "stdin → stdout equals the per-file predictions"
    );

    // Files → one stdout stream: one batch per input batch, the window is the union.
    let r = run(s(&chunks), None, &["--out", "-", "--batch-size", "3"]);
    let (meta, batches) = read_predictions(&r.stdout);
    assert_eq!((meta.source.window.row, meta.source.window.rows), (0, 40));
    assert_eq!(meta.source.chunk_index, None);
    assert_eq!(batches, per_file);

    // stdin → --out-dir: <tile>.pred.arrows.
    let dir = cube.path("pred_stdin");
    run("-", Some(&stream), &["--out-dir", s(&dir)]);
    assert_eq!(files_in(&dir), vec![format!("{}.pred.arrows", cube.tile)]);
    let (_, batches) = read_prediction_file(&dir.join(format!("{}.pred.arrows", cube.tile)));
    assert_eq!(batches, per_file);
}

#[test]
fn a_model_without_contract_needs_and_takes_one() {
    let (cube, chunks) = sentinel_chunks();
    let out = cube.path("pred_nocontract");
    let args = |m: &Path| -> Vec<String> {
        [
            "--model",
            s(m),
            "--input",
            s(&chunks),
            "--out-dir",
            s(&out),
            "--device",
            "cpu",
        ]
        .map(String::from)
        .to_vec()
    };
    let plain: Vec<String> = args(&models::testdata("no_contract.onnx"));
    let r = predict(&plain.iter().map(String::as_str).collect::<Vec<_>>());
    TOOL.fails_with(&r, "no_contract.onnx: the model carries no contract ('treesits.contract' in its metadata): supply one with --contract FILE");
    assert!(!out.exists(), "nothing written");

    let mut with = plain.clone();
    with.extend([
        "--contract".into(),
        s(&models::testdata("linear_left.contract.json")).into(),
    ]);
    TOOL.ok(&predict(&with.iter().map(String::as_str).collect::<Vec<_>>()));
    let reference = cube.path("pred_reference");
    let mut r = args(&models::testdata("linear_left.onnx"));
    r[5] = s(&reference).into();
    TOOL.ok(&predict(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    for n in files_in(&reference) {
        let (mut meta, columns) = read_prediction_file(&out.join(&n));
        // The same predictions; only the model file (name and SHA-256) differs.
        assert_eq!(meta.model_file.as_deref(), Some("no_contract.onnx"));
        let (want_meta, want) = read_prediction_file(&reference.join(&n));
        assert_ne!(meta.model_sha256, want_meta.model_sha256);
        let sha =
            |f: &str| treesits_core::inventory::sha256_hex(&std::fs::read(models::testdata(f)).unwrap());
        assert_eq!(want_meta.model_sha256, Some(sha("linear_left.onnx")));
        assert_eq!(meta.model_sha256, Some(sha("no_contract.onnx")));
        assert_eq!(want_meta.model_contract.as_ref().map(|c| c.bands.len()), Some(5));
        meta.model_file.clone_from(&want_meta.model_file);
        meta.model_sha256.clone_from(&want_meta.model_sha256);
        assert_eq!((meta, columns), (want_meta, want));
    }

    // A contract that is not JSON, and one that names a tensor the model lacks.
    let bad = cube.path("bad.json");
    std::fs::write(&bad, "{ \"contract_version\": 1, oops").unwrap();
    let mut a = plain.clone();
    a.extend(["--contract".into(), s(&bad).into()]);
    let out2 = cube.path("pred_bad");
    a[5] = s(&out2).into();
    let r = predict(&a.iter().map(String::as_str).collect::<Vec<_>>());
    TOOL.fails_with(
        &r,
        &format!("--contract {}: model contract is not valid JSON", bad.display()),
    );
    let mut m = args(&models::testdata("missing_tensor.onnx"));
    m[5] = s(&out2).into();
    let r = predict(&m.iter().map(String::as_str).collect::<Vec<_>>());
    TOOL.fails_with(&r, "the model has an input 'x' that its contract does not name");
    let mut w = args(&models::testdata("wrong_rank.onnx"));
    w[5] = s(&out2).into();
    let r = predict(&w.iter().map(String::as_str).collect::<Vec<_>>());
    TOOL.fails_with(
        &r,
        "input 'x' is f32 of rank 2 but the contract's 'inputs.values' needs f32 of rank 3",
    );
    assert!(!out2.exists());
}

#[test]
fn landsat_chunks_fit_a_six_band_model_and_are_refused_by_a_ten_band_one() {
    let cube = synth(7, 40, 8, vec![Sensor::Lnd08, Sensor::Lnd09]);
    let chunks = cube.extract("chunks", &["--sensors", "LND08,LND09"]);
    let out = cube.path("pred");
    let r = predict(&[
        "--model",
        s(&models::testdata("linear_left.onnx")),
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
    ]);
    TOOL.fails_with(
        &r,
        "_chunk0000.arrows: model contract: the model needs band 'REDEDGE1' but the chunk has only 6 (BLUE,GREEN,RED,NIR,SWIR1,SWIR2): extract with the sensors the model was trained on",
    );
    assert!(!out.exists());

    // The fixed-length model uses the six bands both sensor families share.
    let c = load_contract("fixed_latest.onnx");
    TOOL.ok(&predict(&[
        "--model",
        s(&models::testdata("fixed_latest.onnx")),
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--probabilities",
        "--uncertainty",
        "margin",
    ]));
    for n in files_in(&chunks) {
        let (cm, cb) = read_chunk_file(&chunks.join(&n));
        let (_, pb) = read_prediction_file(&out.join(n.replace(".arrows", ".pred.arrows")));
        check_batch("fixed_latest", &c, &cm.band_names, &cb[0], &pb[0], "margin");
    }
}

#[test]
fn damaged_chunks_are_refused_and_leave_no_output() {
    let (cube, chunks) = sentinel_chunks();
    let model = models::testdata("linear_left.onnx");
    let dir = cube.path("damaged");
    std::fs::create_dir(&dir).unwrap();
    let names = files_in(&chunks);
    // A good chunk sorted first, then a truncated one.
    std::fs::copy(chunks.join(&names[0]), dir.join("a.arrows")).unwrap();
    let bytes = std::fs::read(chunks.join(&names[1])).unwrap();
    std::fs::write(dir.join("b.arrows"), &bytes[..bytes.len() / 2]).unwrap();
    let out = cube.path("pred_damaged");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"x").unwrap();
    let args = ["--model", s(&model), "--input", s(&dir), "--out-dir", s(&out)];
    let r = predict(&args);
    TOOL.fails_with(&r, "b.arrows: the stream is cut short");
    assert!(String::from_utf8_lossy(&r.stderr).contains("re-run cube-extract to write it again"));
    assert_eq!(files_in(&out), vec!["keep.txt"], "no partial output");

    // Cut at the end-of-stream marker only.
    std::fs::write(dir.join("b.arrows"), &bytes[..bytes.len() - 8]).unwrap();
    let r = predict(&args);
    TOOL.fails_with(&r, "b.arrows: the stream is cut short (no end-of-stream marker)");
    assert_eq!(files_in(&out), vec!["keep.txt"]);

    // A chunk of another format version, written by hand with its metadata changed.
    let (meta, batches) = read_chunk_file(&chunks.join(&names[1]));
    let mut map = meta.to_map();
    map.insert("treesits.format_version", "99");
    let schema = Arc::new(meta.schema().with_metadata(map));
    let batch = batches[0].to_record_batch(Arc::new(meta.schema())).unwrap();
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap();
    let mut buf = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    std::fs::write(dir.join("b.arrows"), &buf).unwrap();
    let r = predict(&args);
    TOOL.fails_with(&r, "b.arrows: not a treesits time-series chunk: format version 99 is not supported (this build reads versions 1 to 3)");
    assert_eq!(files_in(&out), vec!["keep.txt"]);

    // A truncated stream on stdin, to stdout: non-zero exit.
    let stream = cube.extract_stream(&[]);
    let r = predict_with(
        &["--model", s(&model), "--input", "-", "--out", "-"],
        Some(&stream[..stream.len() - 8]),
        &[],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr)
        .contains("stdin: the stream is cut short (no end-of-stream marker)"));
}

#[test]
fn missing_inputs_devices_and_libraries_fail_with_one_clear_line() {
    let (cube, chunks) = sentinel_chunks();
    let model = models::testdata("linear_left.onnx");
    let out = cube.path("pred_err");
    let with = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["--model", s(&model), "--input", s(&chunks), "--out-dir", s(&out)]
            .map(String::from)
            .to_vec();
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let run = |args: &[String], env: &[(&str, Option<&str>)]| {
        predict_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), None, env)
    };

    let mut a = with(&[]);
    a[1] = "nowhere/model.onnx".into();
    TOOL.fails_with(&run(&a, &[]), "nowhere/model.onnx: no such model file");

    let mut a = with(&[]);
    a[3] = "nowhere/chunks".into();
    TOOL.fails_with(&run(&a, &[]), "--input nowhere/chunks: no such file or directory");

    // This machine's onnxruntime is the CPU wheel: cuda must fail loudly, auto must fall back.
    let r = run(&with(&["--device", "cuda"]), &[]);
    if r.status.success() {
        eprintln!("skipped the CPU-build device checks: this ONNX Runtime has a working CUDA");
        std::fs::remove_dir_all(&out).unwrap();
    } else {
        TOOL.fails_with(&r, "--device cuda: the ONNX Runtime library");
        assert!(String::from_utf8_lossy(&r.stderr)
            .contains("has no CUDA execution provider (a CPU build): install onnxruntime-gpu"));
        let r = run(&with(&["--device", "auto"]), &[]);
        TOOL.ok(&r);
        assert!(String::from_utf8_lossy(&r.stderr).contains("device auto: CPU (the ONNX Runtime library"));
        std::fs::remove_dir_all(&out).unwrap();
    }
    assert!(!out.exists());

    // No library: ORT_DYLIB_PATH unset (and nothing in the usual places here), or pointing nowhere.
    let r = run(&with(&[]), &[("ORT_DYLIB_PATH", None), ("LD_LIBRARY_PATH", None)]);
    if r.status.success() {
        eprintln!("skipped the missing-library check: a system ONNX Runtime was found");
        std::fs::remove_dir_all(&out).unwrap();
    } else {
        TOOL.fails_with(
            &r,
            "the ONNX Runtime library (libonnxruntime.so) was not found: set ORT_DYLIB_PATH",
        );
    }
    let r = run(
        &with(&[]),
        &[("ORT_DYLIB_PATH", Some("/nonexistent/libonnxruntime.so"))],
    );
    TOOL.fails_with(&r, "ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so is not a file");
    let r = run(&with(&[]), &[("ORT_DYLIB_PATH", Some(s(&model)))]);
    TOOL.fails_with(&r, "cannot load ONNX Runtime from");
    assert!(!out.exists());

    // Usage errors: exit 2.
    let r = run(&with(&["--uncertainty", "variance"]), &[]);
    assert_eq!(r.status.code(), Some(2));
    let mut a = with(&[]);
    a.truncate(4);
    a.extend(["--out".into(), "file.arrows".into()]);
    TOOL.fails_with(&run(&a, &[]), "--out only takes '-'");
}

/// The trained fixtures (models/fixtures/*.onnx, made by the model-training scripts) on a held-out
/// synthetic cube (seed 7; training uses seed 1): overall accuracy against the truth raster.
#[test]
fn trained_fixtures_reach_ninety_percent_on_a_held_out_cube() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures");
    let models: Vec<PathBuf> = ["lstm.onnx", "transformer.onnx"]
        .iter()
        .map(|m| fixtures.join(m))
        .filter(|p| p.exists())
        .collect();
    if models.is_empty() {
        eprintln!("skipped: no trained fixtures in models/fixtures (lstm.onnx, transformer.onnx)");
        return;
    }
    let cube = synth(7, 60, 24, vec![Sensor::Sen2a, Sensor::Sen2b]);
    let chunks = cube.extract("chunks", &[]);
    let truth_path = cube.path(&format!("synth/truth/{}_truth.tif", cube.tile));
    let truth_ds = gdal::Dataset::open(&truth_path).unwrap();
    let (cols, rows) = truth_ds.raster_size();
    let truth: Vec<u8> = truth_ds
        .rasterband(1)
        .unwrap()
        .read_as::<u8>((0, 0), (cols, rows), (cols, rows), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    for model in models {
        let out = cube.path("pred_fixture");
        let _ = std::fs::remove_dir_all(&out);
        TOOL.ok(&predict(&[
            "--model",
            s(&model),
            "--input",
            s(&chunks),
            "--out-dir",
            s(&out),
        ]));
        let mut per_class: BTreeMap<u8, (usize, usize)> = BTreeMap::new();
        for n in files_in(&out) {
            let (meta, batches) = read_prediction_file(&out.join(n));
            for b in batches {
                for i in 0..b.pixels() {
                    let t = truth[b.row[i] as usize * cols + b.col[i] as usize];
                    // Score pixels of classes the model knows (a species model does not map
                    // non-forest), with observations.
                    if b.class[i] == CLASS_NODATA || !meta.classes.iter().any(|c| c.code == t) {
                        continue;
                    }
                    let e = per_class.entry(t).or_default();
                    e.0 += 1;
                    e.1 += usize::from(b.class[i] == t);
                }
            }
        }
        let (n, right) = per_class.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
        let accuracy = right as f64 / n as f64;
        eprintln!(
            "{}: overall accuracy {accuracy:.3} on {n} pixels; per class {per_class:?}",
            model.display()
        );
        assert!(n > 1000);
        assert!(accuracy >= 0.90, "{}: accuracy {accuracy:.3}", model.display());
    }
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}

/// Where the batch of a one-batch chunk or prediction file lies: after the schema message and the
/// batch's own header, before the 8-byte end-of-stream marker.
fn batch_body(bytes: &[u8]) -> std::ops::Range<usize> {
    let len = |at: usize| i32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    let batch = 8 + len(0);
    batch + 8 + len(batch)..bytes.len() - 8
}

/// Integrity (issue 20): a bit flipped anywhere in a chunk's batch (every 997th byte, each flip its
/// own run) is refused with one line naming the file, and nothing is written; a flip that reads
/// back (padding) must give exactly the intact chunk's predictions.
#[test]
fn a_bit_flipped_chunk_is_refused_naming_the_file_and_nothing_is_written() {
    let (cube, chunks) = sentinel_chunks();
    let model = models::testdata("linear_left.onnx");
    let name = files_in(&chunks).remove(0);
    let intact = std::fs::read(chunks.join(&name)).unwrap();
    let dir = cube.path("flipped");
    std::fs::create_dir(&dir).unwrap();
    let baseline = cube.path("pred_intact");
    std::fs::write(dir.join(&name), &intact).unwrap();
    TOOL.ok(&predict(&[
        "--model",
        s(&model),
        "--input",
        s(&dir),
        "--out-dir",
        s(&baseline),
    ]));
    let pred_name = name.replace(".arrows", ".pred.arrows");
    let expected = read_prediction_file(&baseline.join(&pred_name));

    let out = cube.path("pred_flipped");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"x").unwrap();
    let body = batch_body(&intact);
    let (mut refused, mut harmless, mut checksum_refusals) = (0, 0, 0);
    for p in body.step_by(997) {
        let mut b = intact.clone();
        b[p] ^= 1 << (p % 8);
        std::fs::write(dir.join(&name), &b).unwrap();
        let r = predict(&["--model", s(&model), "--input", s(&dir), "--out-dir", s(&out)]);
        if r.status.success() {
            let got = read_prediction_file(&out.join(&pred_name));
            assert!(got == expected, "byte {p} flipped: exit 0 with other predictions");
            std::fs::remove_file(out.join(&pred_name)).unwrap();
            harmless += 1;
            continue;
        }
        TOOL.fails_with(&r, &format!("{name}: "));
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains("damaged"), "byte {p} flipped: {err}");
        if err.contains("fails its checksum (stored ") {
            assert!(
                err.contains("the file is damaged; re-run cube-extract to write it again"),
                "{err}"
            );
            checksum_refusals += 1;
        }
        assert_eq!(files_in(&out), vec!["keep.txt"], "byte {p} flipped: no output");
        refused += 1;
    }
    assert!(
        refused >= 10 && harmless <= refused / 10,
        "{refused} refused, {harmless} harmless"
    );
    assert!(
        checksum_refusals > 0,
        "no flip was refused by the checksum itself"
    );
}
