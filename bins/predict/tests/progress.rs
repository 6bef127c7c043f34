//! predict's progress when stderr is not a terminal (as here): log lines of tile pixels predicted
//! out of the inputs' total, with the rate, the time left and which chunk of which input is done.

use std::path::Path;
use std::process::Command;

use treesits_core::grid::PrjForm;
use treesits_core::Sensor;
use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("predict", env!("CARGO_BIN_EXE_predict"));

#[test]
fn log_lines_count_tile_pixels_with_rate_eta_and_the_chunk_of_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 4,
        tiles: 1,
        tile_pixels: 40,
        dates: 4,
        year: 2021,
        sensors: vec![Sensor::Sen2a],
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
        ..SynthConfig::default()
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile = m.tiles[0].tile_id.to_string();
    let chunks = dir.path().join("chunks");
    let x = Command::new(TOOL.sibling("cube-extract"))
        .args([
            "--tile",
            s(&dir.path().join("synth/cube").join(&tile)),
            "--out-dir",
            s(&chunks),
            "--chunk-rows",
            "10",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", stderr(&x));
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/lstm.onnx");
    let out = dir.path().join("pred");
    let r = TOOL.run(&[
        "--model",
        s(&model),
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--threads",
        "1",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let err = stderr(&r);
    let lines: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once("] predict: ").map(|(_, m)| m))
        .collect();
    // Four chunk files of 10 × 40 pixels: 1600 tile pixels, a line per chunk (each a new tenth).
    assert_eq!(lines.len(), 4, "{err}");
    for (i, l) in lines.iter().enumerate() {
        let done = 400 * (i + 1);
        assert!(
            l.starts_with(&format!("{done}/1600 tile pixels ({}%), ", 25 * (i + 1))),
            "{l}"
        );
        let chunk = chunks.join(format!("{tile}_chunk{i:04}.arrows"));
        let tail = format!(", {} chunk {} of 4 (", chunk.display(), i + 1);
        assert!(l.contains(&tail), "'{tail}' not in {l}");
        assert!(l.ends_with(" pixels with data)"), "{l}");
        assert_eq!(l.contains(" tile pixels/s, eta "), i < 3, "{l}");
    }
    // --quiet hides the lines.
    let q = TOOL.run(&[
        "--model",
        s(&model),
        "--input",
        s(&chunks),
        "--out-dir",
        s(&dir.path().join("q")),
        "-q",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert!(!stderr(&q).contains("tile pixels"), "{}", stderr(&q));
}
