//! cube-extract's progress when stderr is not a terminal (as here): periodic log lines that say how
//! much of the tile is done from its first row, whatever order the parallel workers finish in.

use treesits_core::grid::PrjForm;
use treesits_core::Sensor;
use treesits_gdal::ForceLayout;
use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-extract", env!("CARGO_BIN_EXE_cube-extract"));

#[test]
fn log_lines_count_chunks_and_rows_done_from_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 2,
        tiles: 1,
        tile_pixels: 40,
        dates: 2,
        year: 2021,
        sensors: vec![Sensor::Sen2a],
        layout: ForceLayout::Force38,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile = m.tiles[0].tile_id.to_string();
    let tile_dir = dir.path().join("synth/cube").join(&tile);
    let out = dir.path().join("chunks");
    let r = TOOL.run(&[
        "--tile",
        s(&tile_dir),
        "--out-dir",
        s(&out),
        "--chunk-rows",
        "10",
        "--threads",
        "2",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let err = stderr(&r);
    let lines: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, m)| m))
        .filter(|m| m.starts_with(&format!("{tile}: ")) && m.contains(" chunks ("))
        .collect();
    // Four chunks: each is a new tenth, so each logs; the rows done grow from row 0 and end at 40.
    assert_eq!(lines.len(), 4, "{err}");
    for (i, l) in lines.iter().enumerate() {
        let head = format!("{tile}: {}/4 chunks ({}%), ", i + 1, (i + 1) * 25);
        assert!(l.starts_with(&head), "{l}");
        let rows = l.split("rows 0..").nth(1).expect(l);
        let (upto, rest) = rows.split_once(" of 40 done").expect(l);
        let upto: usize = upto.parse().expect(l);
        assert!(upto.is_multiple_of(10) && upto <= 10 * (i + 1), "{l}");
        if upto < 10 * (i + 1) {
            assert!(
                rest.starts_with(" (and "),
                "chunks beyond the rows done are counted: {l}"
            );
        }
    }
    assert!(lines[3].ends_with(", rows 0..40 of 40 done"), "{}", lines[3]);
    assert!(
        lines[0].contains(" chunks/s, eta "),
        "rate and time left: {}",
        lines[0]
    );
}
