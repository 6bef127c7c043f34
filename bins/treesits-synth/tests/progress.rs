//! treesits-synth's progress when stderr is not a terminal (as here): log lines of acquisitions
//! written out of tiles × dates, with the rate, the time left and the tile being written.

use treesits_testkit::cli::{s, stderr, Tool};

const TOOL: Tool = Tool::new("treesits-synth", env!("CARGO_BIN_EXE_treesits-synth"));

#[test]
fn log_lines_count_acquisitions_per_tile_and_overall() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let r = TOOL.run(&[
        "--out",
        s(&out),
        "--tiles",
        "2",
        "--size",
        "20",
        "--dates",
        "5",
        "--threads",
        "1",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let err = stderr(&r);
    let lines: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once("] treesits-synth: ").map(|(_, m)| m))
        .collect();
    // Ten acquisitions, each a new tenth: one line each, in order with one thread.
    assert_eq!(lines.len(), 10, "{err}");
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        assert!(
            l.starts_with(&format!("{n}/10 acquisitions ({}%), ", n * 10)),
            "{l}"
        );
        assert!(
            l.ends_with(&format!(": {} of 5 dates (20 x 20 px)", (i % 5) + 1)),
            "{l}"
        );
        assert_eq!(l.contains(" acquisitions/s, eta "), n < 10, "{l}");
    }
    assert!(lines[0].contains(", tile X"), "{}", lines[0]);
    assert_ne!(
        lines[0].split(", tile ").nth(1).unwrap()[..11],
        lines[9].split(", tile ").nth(1).unwrap()[..11],
        "the second tile is named"
    );
    // --quiet hides it.
    let q = TOOL.run(&[
        "--out",
        s(&dir.path().join("q")),
        "--tiles",
        "1",
        "--size",
        "20",
        "--dates",
        "2",
        "-q",
    ]);
    assert!(q.status.success());
    assert!(stderr(&q).is_empty(), "{}", stderr(&q));
}
