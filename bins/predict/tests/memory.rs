//! predict's memory budget (`--memory`, `TREESITS_MEMORY`): bad sizes are usage errors naming the
//! flag and the fix; the log states the budget and how it is split; and the budget, like
//! `--batch-size`, changes how pixels are cut into model batches but never a byte of the output.
//!
//! Needs the ONNX Runtime library: run after `source scripts/env.sh` (scripts/test does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use treesits_core::grid::PrjForm;
use treesits_core::Sensor;
use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::{models, SynthConfig};

const TOOL: Tool = Tool::new("predict", env!("CARGO_BIN_EXE_predict"));

/// A synthetic Sentinel-2 tile of 80 × 80 pixels and 48 dates extracted as one chunk of 6400
/// pixels (series of up to about 30 observations): enough pixels of one length that a small budget
/// cuts them into more batches than a large one.
fn chunks() -> &'static (tempfile::TempDir, PathBuf) {
    static CHUNKS: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    CHUNKS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            out: dir.path().join("synth"),
            seed: 5,
            tiles: 1,
            tile_pixels: 80,
            dates: 48,
            year: 2021,
            sensors: vec![Sensor::Sen2a, Sensor::Sen2b],
            prj_form: PrjForm::Tagged,
            resolution: 10.0,
            force: false,
            ..SynthConfig::default()
        };
        let m = treesits_testkit::generate(&cfg).unwrap();
        let tile = dir.path().join("synth/cube").join(m.tiles[0].tile_id.to_string());
        let chunks = dir.path().join("chunks");
        TOOL.ok(&Command::new(TOOL.sibling("cube-extract"))
            .args([
                "--tile",
                s(&tile),
                "--out-dir",
                s(&chunks),
                "--chunk-rows",
                "80",
                "-q",
            ])
            .output()
            .unwrap());
        (dir, chunks)
    })
}

/// Runs predict on the chunks into `out` with `extra` arguments and `TREESITS_MEMORY` as given
/// (`None`: unset).
fn predict(model: &Path, out: &Path, extra: &[&str], env_memory: Option<&str>) -> Output {
    let (_, chunks) = chunks();
    let mut cmd = TOOL.command();
    cmd.args(["--model", s(model), "--input", s(chunks), "--out-dir", s(out)])
        .args(["--device", "cpu", "--probabilities", "--uncertainty", "margin"])
        .args(extra);
    match env_memory {
        Some(v) => cmd.env("TREESITS_MEMORY", v),
        None => cmd.env_remove("TREESITS_MEMORY"),
    };
    cmd.output().unwrap()
}

/// Output files by name, with their bytes.
type Files = Vec<(String, Vec<u8>)>;

/// The output files' bytes, by name.
fn outputs(dir: &Path) -> Files {
    let mut files: Files = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The number of model batches of the run's (one) chunk, from its debug line.
fn batches(log: &str) -> usize {
    let line = log
        .lines()
        .find(|l| l.contains("% padding)"))
        .unwrap_or_else(|| panic!("no chunk line: {log}"));
    let before = line.split(" batches (").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn outputs_are_byte_identical_whatever_the_memory_budget_and_batch_size() {
    let (dir, _) = chunks();
    let mut models = vec![models::testdata("bilstm.onnx")];
    let lstm = models::testdata("../fixtures/lstm.onnx");
    if lstm.exists() {
        models.push(lstm);
    }
    for model in &models {
        let name = model.file_stem().unwrap().to_string_lossy().into_owned();
        let mut reference: Option<(Files, String)> = None;
        let mut cuts = Vec::new();
        for (label, extra) in [
            ("--memory 4G", vec!["--memory", "4G"]),
            ("--memory 64M", vec!["--memory", "64M"]),
            (
                "--memory 64M --batch-size 7",
                vec!["--memory", "64M", "--batch-size", "7"],
            ),
            (
                "--memory 4G --batch-size 100000",
                vec!["--memory", "4G", "--batch-size", "100000"],
            ),
            ("TREESITS_MEMORY=16M", vec![]),
        ] {
            let out = dir.path().join(format!("pred_{name}_{}", cuts.len()));
            let env = extra.is_empty().then_some("16M");
            let mut args = extra.clone();
            args.push("-v");
            let r = predict(model, &out, &args, env);
            TOOL.ok(&r);
            let log = stderr(&r);
            cuts.push((label, batches(&log)));
            let files = outputs(&out);
            assert_eq!(files.len(), 1);
            match &reference {
                None => reference = Some((files, label.to_string())),
                Some((want, first)) => {
                    assert!(
                        files == *want,
                        "{name}: the predictions of {label} differ from those of {first}"
                    );
                }
            }
        }
        // The budgets did cut the chunk differently: a smaller budget, more (smaller) batches.
        let count = |label: &str| cuts.iter().find(|c| c.0 == label).unwrap().1;
        assert!(
            count("--memory 64M") > count("--memory 4G"),
            "{name}: batches per run {cuts:?}"
        );
        assert!(
            count("TREESITS_MEMORY=16M") > count("--memory 64M"),
            "{name}: {cuts:?}"
        );
        assert!(
            count("--memory 64M --batch-size 7") > count("--memory 64M"),
            "{name}: {cuts:?}"
        );
    }
}

#[test]
fn the_log_states_the_budget_where_it_came_from_and_how_it_is_split() {
    let (dir, _) = chunks();
    let model = models::testdata("doy_right_mask.onnx");
    let r = predict(
        &model,
        &dir.path().join("pred_log_flag"),
        &["--memory", "1.5G"],
        None,
    );
    TOOL.ok(&r);
    let log = stderr(&r);
    let line = log
        .lines()
        .find(|l| l.contains("memory budget"))
        .unwrap_or_else(|| panic!("no budget line: {log}"));
    for words in [
        "memory budget 1.5 GiB (--memory): 768.0 MiB for the input record batch being packed (+ the one being read)",
        "768.0 MiB for the model's batches (2 packed batches in flight + the one being packed + the one running)",
        "caps one batch's positions (pixels × steps T)",
        "of activations per position",
        "pixels per batch, at",
        "at most 1024 pixels (--batch-size)",
    ] {
        assert!(line.contains(words), "'{words}' missing in: {line}");
    }
    // From the environment, and by default (the container's limit or 1 GiB at most).
    let r = predict(&model, &dir.path().join("pred_log_env"), &[], Some("300M"));
    TOOL.ok(&r);
    assert!(
        stderr(&r).contains("memory budget 300.0 MiB (--memory)"),
        "{}",
        stderr(&r)
    );
    let r = predict(&model, &dir.path().join("pred_log_default"), &[], None);
    TOOL.ok(&r);
    let log = stderr(&r);
    assert!(log.contains("memory budget "), "{log}");
    assert!(log.contains("; --memory changes it)"), "{log}");
}

#[test]
fn a_bad_memory_size_is_a_usage_error_naming_the_flag_and_the_fix() {
    let (dir, _) = chunks();
    let model = models::testdata("linear_left.onnx");
    for (args, env) in [
        (vec!["--memory", "2X"], None),
        (vec!["--memory", "0"], None),
        (vec!["--memory=-1G"], None),
        (vec![], Some("lots")),
    ] {
        let out = dir.path().join("pred_bad");
        let r = predict(&model, &out, &args, env);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?} {env:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "one error line: {err}");
        assert!(lines[0].contains("--memory"), "names the flag: {err}");
        assert!(lines[0].contains("TREESITS_MEMORY"), "names the variable: {err}");
        assert!(
            lines[0].contains("e.g. 1500M, 2G or 1.5GiB"),
            "says how to write it: {err}"
        );
        assert!(!out.exists(), "nothing written");
        assert!(r.stdout.is_empty());
    }
}
