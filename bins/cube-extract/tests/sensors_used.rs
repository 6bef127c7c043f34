//! The chunks name the sensors actually read, not the ones requested: a cube of SEN2A and SEN2B
//! extracted with `--sensors SEN2A,SEN2B,SEN2C` says `SEN2A=0,SEN2B=1`, and a window holding only
//! SEN2B acquisitions says `SEN2B=1` (the codes in the `sensor` column do not change).

use std::path::Path;

use treesits_core::chunk::{read_chunks, ChunkMetadata};
use treesits_core::{Date, Sensor};
use treesits_testkit::cli::{s, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-extract", env!("CARGO_BIN_EXE_cube-extract"));

fn chunk_metadata(dir: &Path) -> Vec<(ChunkMetadata, Vec<u8>)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let (meta, batches) = read_chunks(std::fs::File::open(p).unwrap()).unwrap();
            let codes = batches.iter().flat_map(|b| b.sensor.iter().copied()).collect();
            (meta, codes)
        })
        .collect()
}

#[test]
fn chunks_record_the_sensors_read_not_those_requested() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 3,
        tiles: 1,
        tile_pixels: 40,
        dates: 12,
        year: 2021,
        sensors: vec![Sensor::Sen2a, Sensor::Sen2b],
        ..Default::default()
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile = dir.path().join("synth/cube").join(m.tiles[0].tile_id.to_string());

    let out = dir.path().join("all");
    let r = TOOL.run(&[
        "--tile",
        s(&tile),
        "--sensors",
        "SEN2A,SEN2B,SEN2C",
        "--out-dir",
        s(&out),
        "-q",
    ]);
    TOOL.ok(&r);
    let chunks = chunk_metadata(&out);
    assert!(!chunks.is_empty());
    for (meta, codes) in &chunks {
        assert_eq!(meta.sensors, vec![Sensor::Sen2a, Sensor::Sen2b]);
        assert!(codes
            .iter()
            .all(|&c| c == Sensor::Sen2a.code() || c == Sensor::Sen2b.code()));
    }
    assert!(chunks.iter().any(|(_, c)| c.contains(&Sensor::Sen2b.code())));

    // A window with SEN2B files only (the generator alternates the sensors date by date).
    let mut files: Vec<String> = std::fs::read_dir(&tile)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_BOA.tif"))
        .collect();
    files.sort();
    let sen2b = files
        .iter()
        .find(|n| n.contains("SEN2B"))
        .expect("a SEN2B acquisition");
    let date: Date = format!("{}-{}-{}", &sen2b[0..4], &sen2b[4..6], &sen2b[6..8])
        .parse()
        .unwrap();
    assert!(
        !files
            .iter()
            .any(|n| n.starts_with(&sen2b[..8]) && n.contains("SEN2A")),
        "no SEN2A on {date}"
    );
    let one = dir.path().join("one");
    let r = TOOL.run(&[
        "--tile",
        s(&tile),
        "--sensors",
        "SEN2A,SEN2B",
        "--start",
        &date.to_string(),
        "--end",
        &date.to_string(),
        "--out-dir",
        s(&one),
        "-q",
    ]);
    TOOL.ok(&r);
    for (meta, codes) in chunk_metadata(&one) {
        assert_eq!(meta.sensors, vec![Sensor::Sen2b]);
        assert_eq!((meta.date_start, meta.date_end), (date, date));
        assert!(codes.iter().all(|&c| c == Sensor::Sen2b.code()), "{codes:?}");
    }
}
