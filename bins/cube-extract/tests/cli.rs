//! `cube-extract` run as a program on synthetic cubes: exact values, filters, formats, S3, errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gdal::raster::Buffer;
use gdal::Dataset;
use treesits_core::chunk::{read_chunks, ChunkColumns, ChunkMetadata};
use treesits_core::grid::PrjForm;
use treesits_core::{Date, Level2Name, Product, QaiScreen, Sensor};
use treesits_gdal::ForceLayout;
use treesits_gdal::{GeoTiffSpec, TiffLayout};
use treesits_testkit::cli::{assert_snapshot, file_names, s, Tool};
use treesits_testkit::moto::{python, Moto};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-extract", env!("CARGO_BIN_EXE_cube-extract"));

/// One observation: (days since epoch, sensor code, band values).
type Obs = (i32, u8, Vec<i16>);
/// Pixel (row, col) → its observations, in file order.
type Series = BTreeMap<(u32, u32), Vec<Obs>>;

struct Cube {
    _dir: tempfile::TempDir,
    root: PathBuf,
    tile_dir: PathBuf,
    size: usize,
}

fn synth(layout: ForceLayout, prj_form: PrjForm, size: usize, dates: usize) -> Cube {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 7,
        tiles: 1,
        tile_pixels: size,
        dates,
        year: 2021,
        sensors: vec![Sensor::Sen2a, Sensor::Sen2b],
        layout,
        prj_form,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let root = dir.path().join("synth");
    let tile_dir = root.join("cube").join(m.tiles[0].tile_id.to_string());
    Cube {
        _dir: dir,
        root,
        tile_dir,
        size,
    }
}

/// The tile's acquisitions, read back independently with GDAL: (date, sensor, BOA bands, QAI).
#[allow(clippy::type_complexity)]
fn read_tile(tile_dir: &Path) -> Vec<(Date, Sensor, Vec<Vec<i16>>, Vec<i16>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(tile_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let l2 = Level2Name::parse(&name).unwrap();
        if l2.product != Product::Boa {
            continue;
        }
        let read = |p: &Path, b: usize| -> Vec<i16> {
            let ds = Dataset::open(p).unwrap();
            let band = ds.rasterband(b).unwrap();
            let (c, r) = ds.raster_size();
            band.read_as::<i16>((0, 0), (c, r), (c, r), None)
                .unwrap()
                .into_shape_and_vec()
                .1
        };
        let boa = tile_dir.join(&name);
        let qai = tile_dir.join(l2.with_product(Product::Qai).to_string());
        let n = Dataset::open(&boa).unwrap().raster_count();
        let bands = (1..=n).map(|b| read(&boa, b)).collect();
        out.push((l2.date, l2.sensor, bands, read(&qai, 1)));
    }
    out.sort_by_key(|a| (a.0, a.1.code()));
    out
}

/// What the chunks must hold, computed from the files: every pixel in the mask, with the
/// observations whose QAI the screen keeps. Also returns how many observations the screen rejected.
fn expected(
    tile_dir: &Path,
    size: usize,
    screen: &QaiScreen,
    keep: impl Fn(Date, Sensor) -> bool,
    mask: Option<&[u8]>,
) -> (Series, usize) {
    let mut series = Series::new();
    let mut rejected = 0;
    let acqs: Vec<_> = read_tile(tile_dir)
        .into_iter()
        .filter(|a| keep(a.0, a.1))
        .collect();
    assert!(!acqs.is_empty());
    for px in 0..size * size {
        if mask.is_some_and(|m| m[px] != 1) {
            continue;
        }
        let obs = series
            .entry(((px / size) as u32, (px % size) as u32))
            .or_default();
        for (date, sensor, bands, qai) in &acqs {
            if screen.rejects(qai[px]) {
                rejected += 1;
            } else {
                obs.push((
                    date.days_since_epoch(),
                    sensor.code(),
                    bands.iter().map(|b| b[px]).collect(),
                ));
            }
        }
    }
    (series, rejected)
}

fn series_of(chunks: &[ChunkColumns]) -> Series {
    let mut s = Series::new();
    for c in chunks {
        for i in 0..c.pixels() {
            let obs = c
                .range(i)
                .map(|j| (c.date[j], c.sensor[j], c.bands.iter().map(|b| b[j]).collect()))
                .collect();
            assert!(
                s.insert((c.row[i], c.col[i]), obs).is_none(),
                "pixel written twice"
            );
        }
    }
    s
}

/// Every chunk file in `dir`, sorted by name, with its metadata.
fn read_dir_chunks(dir: &Path) -> Vec<(String, ChunkMetadata, ChunkColumns)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let (meta, mut batches) = read_chunks(std::fs::File::open(dir.join(&n)).unwrap()).unwrap();
            assert_eq!(batches.len(), 1, "{n}: one batch per chunk file");
            (n, meta, batches.remove(0))
        })
        .collect()
}

/// A mask of a checkerboard of 10-pixel squares, written like aoi-select writes masks.
fn write_mask(cube: &Cube, path: &Path, size_override: Option<usize>, shift_x: f64) -> Vec<u8> {
    write_mask_with(cube, path, size_override, shift_x, |r, c| {
        u8::from((r / 10 + c / 10) % 2 == 0)
    })
}

/// A mask with `value(row, col)` per pixel on the tile's grid (or a `size_override` one, shifted).
fn write_mask_with(
    cube: &Cube,
    path: &Path,
    size_override: Option<usize>,
    shift_x: f64,
    value: impl Fn(usize, usize) -> u8,
) -> Vec<u8> {
    let ds = Dataset::open(
        std::fs::read_dir(&cube.tile_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let size = size_override.unwrap_or(cube.size);
    let mask: Vec<u8> = (0..size * size).map(|px| value(px / size, px % size)).collect();
    let spec = GeoTiffSpec {
        cols: size,
        rows: size,
        bands: 1,
        layout: TiffLayout::Strips { rows: 16 },
        geotransform: {
            let mut g = ds.geo_transform().unwrap();
            g[0] += shift_x;
            g
        },
        projection_wkt: &ds.projection(),
    };
    let out = spec.create::<u8>(path).unwrap();
    out.rasterband(1)
        .unwrap()
        .write((0, 0), (size, size), &mut Buffer::new((size, size), mask.clone()))
        .unwrap();
    mask
}

#[test]
fn force37_lines_prj_chunks_hold_exactly_the_screened_observations_of_masked_pixels() {
    let cube = synth(ForceLayout::Force37, PrjForm::Lines, 120, 10);
    let out = cube.root.join("chunks");
    let mask_path = cube.root.join("mask.tif");
    let mask = write_mask(&cube, &mask_path, None, 0.0);
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--mask",
        s(&mask_path),
        "--out-dir",
        s(&out),
        "--threads",
        "2",
    ]);
    TOOL.ok(&r);
    let chunks = read_dir_chunks(&out);
    // FORCE 3.7 strips are a tenth of the tile: 12 rows, so 10 chunks by default.
    assert_eq!(chunks.len(), 10);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap();
    for (i, (name, meta, c)) in chunks.iter().enumerate() {
        assert_eq!(name, &format!("{tile}_chunk{i:04}.arrows"));
        assert_eq!(meta.tile_id.to_string(), tile);
        assert_eq!(meta.chunk_index, Some(i));
        assert_eq!(meta.chunk_count, 10);
        assert_eq!((meta.window.row, meta.window.rows), (i * 12, 12));
        assert_eq!(meta.band_names.len(), 10);
        assert_eq!(meta.qai_screen, QaiScreen::force_default().to_string());
        assert!(meta.crs_wkt.contains("Lambert"));
        assert!(c
            .row
            .iter()
            .all(|r| (i * 12..i * 12 + 12).contains(&(*r as usize))));
    }
    let got = series_of(&chunks.into_iter().map(|c| c.2).collect::<Vec<_>>());
    let (want, rejected) = expected(
        &cube.tile_dir,
        cube.size,
        &QaiScreen::force_default(),
        |_, _| true,
        Some(&mask),
    );
    assert!(rejected > 0, "the synthetic cube has clouds to screen");
    assert_eq!(got.len(), mask.iter().filter(|m| **m == 1).count());
    assert!(got
        .keys()
        .all(|(r, c)| mask[*r as usize * cube.size + *c as usize] == 1));
    assert_eq!(got, want);
    // Observations are sorted by (date, sensor) within each pixel.
    assert!(got
        .values()
        .all(|o| o.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))));
}

#[test]
fn force38_tagged_prj_honours_dates_sensors_and_chunk_rows() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 150, 12);
    let all = read_tile(&cube.tile_dir);
    let (start, end) = (all[2].0, all[all.len() - 3].0);
    let out = cube.root.join("chunks");
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--start",
        &start.to_string(),
        "--end",
        &end.to_string(),
        "--sensors",
        "SEN2B",
        "--chunk-rows",
        "64",
    ]);
    TOOL.ok(&r);
    let chunks = read_dir_chunks(&out);
    assert_eq!(chunks.len(), 3, "150 rows in chunks of 64");
    assert_eq!(chunks[2].1.window.rows, 150 - 128);
    assert_eq!(chunks[0].1.sensors, vec![Sensor::Sen2b]);
    // The metadata names the first and last acquisition read, inside the requested range.
    let read: Vec<Date> = all
        .iter()
        .filter(|a| a.1 == Sensor::Sen2b && a.0 >= start && a.0 <= end)
        .map(|a| a.0)
        .collect();
    assert!(read.len() >= 2);
    assert_eq!(
        (chunks[0].1.date_start, chunks[0].1.date_end),
        (read[0], read[read.len() - 1])
    );
    let got = series_of(&chunks.into_iter().map(|c| c.2).collect::<Vec<_>>());
    let (want, _) = expected(
        &cube.tile_dir,
        cube.size,
        &QaiScreen::force_default(),
        |d, sen| sen == Sensor::Sen2b && d >= start && d <= end,
        None,
    );
    assert_eq!(got.len(), 150 * 150, "no mask: every pixel");
    assert_eq!(got, want);
    let sen2b = Sensor::Sen2b.code();
    assert!(got.values().flatten().all(|o| o.1 == sen2b));
}

#[test]
fn acquisitions_merged_in_groups_of_any_size_give_the_same_chunks() {
    // The test tiles are small enough for one group per chunk by default; force one acquisition
    // per group, and groups of a few, and check every observation against the files.
    let cube = synth(ForceLayout::Force37, PrjForm::Tagged, 100, 9);
    let (want, rejected) = expected(
        &cube.tile_dir,
        cube.size,
        &QaiScreen::force_default(),
        |_, _| true,
        None,
    );
    assert!(rejected > 0);
    // A window of 1000 pixels, about half of them valid: 2000 bytes of band window and ~4000 of
    // program per acquisition, so 15 000 bytes make groups of two or three acquisitions.
    for bytes in [None, Some("1"), Some("15000")] {
        let dir = cube.root.join(format!("chunks-{}", bytes.unwrap_or("default")));
        let mut args = vec![
            "--tile",
            s(&cube.tile_dir),
            "--out-dir",
            s(&dir),
            "--threads",
            "2",
        ];
        args.extend(bytes.iter().flat_map(|b| ["--group-bytes", *b]));
        TOOL.ok(&TOOL.run(&args));
        let chunks: Vec<ChunkColumns> = read_dir_chunks(&dir).into_iter().map(|c| c.2).collect();
        assert_eq!(series_of(&chunks), want, "--group-bytes {bytes:?}");
    }
}

#[test]
fn screen_none_keeps_every_observation_and_empty_pixels_are_kept() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 100, 8);
    let n_acq = read_tile(&cube.tile_dir).len();
    let none = cube.root.join("none");
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&none),
        "--screen",
        "none",
    ]));
    let chunks = read_dir_chunks(&none);
    assert_eq!(chunks[0].1.qai_screen, "none");
    let got = series_of(&chunks.into_iter().map(|c| c.2).collect::<Vec<_>>());
    assert!(got.values().all(|o| o.len() == n_acq));
    let (want, rejected) = expected(&cube.tile_dir, 100, &QaiScreen::none(), |_, _| true, None);
    assert_eq!(rejected, 0);
    assert_eq!(got, want);

    // One partly cloudy acquisition alone: the pixels it has nothing valid for must still be
    // present, with n_obs = 0.
    let tile = read_tile(&cube.tile_dir);
    let screen = QaiScreen::force_default();
    let (date, sensor, _, qai) = tile
        .iter()
        .find(|a| a.3.iter().any(|q| screen.rejects(*q)) && a.3.iter().any(|q| !screen.rejects(*q)))
        .expect("a partly cloudy acquisition");
    let one = cube.root.join("one");
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&one),
        "--start",
        &date.to_string(),
        "--end",
        &date.to_string(),
        "--sensors",
        sensor.name(),
    ]));
    let chunks: Vec<ChunkColumns> = read_dir_chunks(&one).into_iter().map(|c| c.2).collect();
    let got = series_of(&chunks);
    assert_eq!(got.len(), 100 * 100);
    let empty = got.values().filter(|o| o.is_empty()).count();
    assert_eq!(empty, qai.iter().filter(|q| screen.rejects(**q)).count());
    assert!(empty > 0);
}

#[test]
fn stdout_stream_holds_the_same_chunks_as_the_files() {
    let cube = synth(ForceLayout::Force37, PrjForm::Tagged, 100, 8);
    let dir = cube.root.join("chunks");
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&dir),
        "--threads",
        "2",
    ]));
    let files = read_dir_chunks(&dir);
    let r = TOOL.run(&["--tile", s(&cube.tile_dir), "--out", "-", "--threads", "2"]);
    TOOL.ok(&r);
    let (meta, batches) = read_chunks(r.stdout.as_slice()).unwrap();
    assert_eq!(meta.chunk_index, None);
    assert_eq!(meta.chunk_count, files.len());
    assert_eq!((meta.window.row, meta.window.rows), (0, 100));
    assert_eq!(batches.len(), files.len());
    for (b, f) in batches.iter().zip(&files) {
        assert_eq!(b, &f.2);
    }
    // Logs went to stderr, not into the stream.
    assert!(String::from_utf8_lossy(&r.stderr).contains("chunk"));
}

#[test]
fn zstd_level_changes_the_file_sizes_not_the_chunks() {
    let cube = synth(ForceLayout::Force37, PrjForm::Tagged, 100, 8);
    let extract = |level: &str| {
        let dir = cube.root.join(format!("chunks{level}"));
        let args = [
            "--tile",
            s(&cube.tile_dir),
            "--out-dir",
            s(&dir),
            "--zstd-level",
            level,
        ];
        TOOL.ok(&TOOL.run(&args));
        let bytes: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        (read_dir_chunks(&dir), bytes)
    };
    let (default, _) = extract("1");
    let (fast, fast_bytes) = extract("-5");
    let (small, small_bytes) = extract("19");
    assert!(small_bytes < fast_bytes, "{small_bytes} vs {fast_bytes}");
    assert_eq!(fast, default);
    assert_eq!(small, default);
    // Out of zstd's range: a usage error, nothing written.
    let dir = cube.root.join("chunks-bad");
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&dir),
        "--zstd-level",
        "23",
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("23 is not in -131072..=22"));
    assert!(!dir.exists());
}

#[test]
fn pyarrow_reads_a_chunk_without_our_code() {
    let cube = synth(ForceLayout::Force37, PrjForm::Lines, 100, 8);
    let dir = cube.root.join("chunks");
    TOOL.ok(&TOOL.run(&["--tile", s(&cube.tile_dir), "--out-dir", s(&dir)]));
    let (name, meta, c) = read_dir_chunks(&dir).remove(3);
    let script = r#"
import sys, pyarrow.ipc as ipc
with open(sys.argv[1], "rb") as f:
    t = ipc.open_stream(f).read_all()
m = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
print(m["treesits.format"], m["treesits.format_version"], m["treesits.tile_id"], m["treesits.window"])
print(t.num_rows, t.column("n_obs").to_pylist() == [len(d) for d in t.column("date").to_pylist()])
i = max(range(t.num_rows), key=lambda i: t.column("n_obs")[i].as_py())
print(t.column("row")[i].as_py(), t.column("col")[i].as_py())
print(" ".join(d.isoformat() for d in t.column("date")[i].as_py()))
print(" ".join(str(v) for v in t.column("NIR")[i].as_py()))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(dir.join(&name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let w = meta.window;
    assert_eq!(
        lines[0],
        format!(
            "treesits-timeseries-chunk {} {} {},{},{},{}",
            treesits_core::chunk::FORMAT_VERSION,
            meta.tile_id,
            w.row,
            w.col,
            w.rows,
            w.cols
        )
    );
    assert_eq!(lines[1], format!("{} True", c.pixels()));
    let i = (0..c.pixels())
        .max_by_key(|&i| (c.range(i).len(), std::cmp::Reverse(i)))
        .unwrap();
    assert_eq!(lines[2], format!("{} {}", c.row[i], c.col[i]));
    let dates: Vec<String> = c
        .range(i)
        .map(|j| Date::from_days_since_epoch(c.date[j]).to_string())
        .collect();
    assert_eq!(lines[3], dates.join(" "));
    let nir = meta.band_names.iter().position(|b| b == "NIR").unwrap();
    let values: Vec<String> = c.range(i).map(|j| c.bands[nir][j].to_string()).collect();
    assert_eq!(lines[4], values.join(" "));
}

#[test]
fn s3_tile_through_vsis3_gives_the_same_chunks_as_local() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 100, 8);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start();
    moto.upload_dir(&cube.root.join("cube"), "cube", "germany");

    let remote = cube.root.join("remote");
    let url = format!("s3://cube/germany/{tile}");
    let r = TOOL
        .command()
        .args(["--tile", &url, "--out-dir", s(&remote), "--chunk-rows", "40"])
        .envs(moto.gdal_env())
        .output()
        .unwrap();
    TOOL.ok(&r);
    let local = cube.root.join("local");
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&local),
        "--chunk-rows",
        "40",
    ]));
    let (a, b) = (read_dir_chunks(&remote), read_dir_chunks(&local));
    assert_eq!(a.len(), 3);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1, &x.2), (&y.0, &y.1, &y.2));
    }
    assert!(a.iter().map(|c| c.2.observations()).sum::<usize>() > 0);

    // The cube's datacube-definition.prj is checked on S3 too: one that puts the tile elsewhere is
    // refused, naming the S3 object, and nothing is written.
    let prj = std::fs::read_to_string(cube.root.join("cube/datacube-definition.prj")).unwrap();
    let mut def = treesits_core::CubeDefinition::parse(&prj).unwrap();
    def.origin_map.0 += 1000.0;
    let wrong = cube.root.join("wrong.prj");
    std::fs::write(&wrong, def.to_prj(PrjForm::Tagged)).unwrap();
    moto.put(&wrong, "cube", "germany/datacube-definition.prj");
    let refused = cube.root.join("refused");
    let r = TOOL
        .command()
        .args(["--tile", &url, "--out-dir", s(&refused)])
        .envs(moto.gdal_env())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("s3://cube/germany/datacube-definition.prj") && err.contains("is not the corner"),
        "{err}"
    );
    assert!(!refused.exists());
    drop(moto);
}

#[test]
fn rerun_with_fewer_chunks_removes_only_that_tiles_stale_chunks() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 100, 8);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap().to_string();
    let out = cube.root.join("chunks");
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--chunk-rows",
        "10",
    ]));
    let names = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&out).len(), 10);
    // Files that are not this tile's chunks stay.
    std::fs::write(out.join("X9999_Y9999_chunk0007.arrows"), b"other tile").unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();

    // A failed rerun changes nothing.
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--chunk-rows",
        "40",
        "--start",
        "2030-01-01",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(names(&out).len(), 12);

    // Three chunks now, with files reopened per chunk (two open at most): chunks 3..9 of the first
    // run go, and the values are exact.
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--chunk-rows",
        "40",
        "--max-open-files",
        "2",
        "--threads",
        "2",
    ]));
    let mut want_names: Vec<String> = (0..3).map(|i| format!("{tile}_chunk{i:04}.arrows")).collect();
    want_names.push("X9999_Y9999_chunk0007.arrows".into());
    want_names.push("notes.txt".into());
    want_names.sort();
    assert_eq!(names(&out), want_names);
    std::fs::remove_file(out.join("X9999_Y9999_chunk0007.arrows")).unwrap();
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    let chunks = read_dir_chunks(&out);
    assert!(chunks.iter().all(|c| c.1.chunk_count == 3));
    let got = series_of(&chunks.into_iter().map(|c| c.2).collect::<Vec<_>>());
    let (want, _) = expected(
        &cube.tile_dir,
        cube.size,
        &QaiScreen::force_default(),
        |_, _| true,
        None,
    );
    assert_eq!(got, want);
}

#[test]
fn chunks_outside_the_mask_are_written_empty() {
    let cube = synth(ForceLayout::Force37, PrjForm::Lines, 100, 6);
    let mask_path = cube.root.join("top.mask.tif");
    // Rows 0..25 only, minus one column: chunks 0 and 1 (10 rows each) are full, chunk 2 half,
    // chunks 3..9 empty.
    let mask = write_mask_with(&cube, &mask_path, None, 0.0, |r, c| u8::from(r < 25 && c != 7));
    let out = cube.root.join("chunks");
    TOOL.ok(&TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--mask",
        s(&mask_path),
        "--out-dir",
        s(&out),
    ]));
    let chunks = read_dir_chunks(&out);
    assert_eq!(chunks.len(), 10);
    let pixels: Vec<usize> = chunks.iter().map(|c| c.2.pixels()).collect();
    assert_eq!(pixels, vec![990, 990, 495, 0, 0, 0, 0, 0, 0, 0]);
    assert!(chunks[3..].iter().all(|c| c.2.offsets == vec![0]));
    let got = series_of(&chunks.into_iter().map(|c| c.2).collect::<Vec<_>>());
    let (want, _) = expected(
        &cube.tile_dir,
        cube.size,
        &QaiScreen::force_default(),
        |_, _| true,
        Some(&mask),
    );
    assert_eq!(got, want);
}

#[test]
fn progress_is_logged_without_a_terminal_and_quiet_silences_it() {
    let cube = synth(ForceLayout::Force37, PrjForm::Lines, 60, 4);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap().to_string();
    let out = cube.root.join("chunks");
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--chunk-rows",
        "6",
    ]);
    TOOL.ok(&r);
    let err = String::from_utf8_lossy(&r.stderr);
    // stderr is a pipe here: plain log lines, one per tenth of the 10 chunks, ending at 100%.
    for i in 1..=10 {
        let pct = i * 10;
        let line = format!("{tile}: {i}/10 chunks ({pct}%), ");
        assert_eq!(err.matches(&line).count(), 1, "'{line}' once in:\n{err}");
    }
    assert!(!err.contains('\r'), "no bar drawing without a terminal");
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&cube.root.join("quiet")),
        "--quiet",
    ]);
    TOOL.ok(&r);
    assert_eq!(String::from_utf8_lossy(&r.stderr), "");
}

/// Runs cube-extract expecting failure: exit status 1, one line on stderr containing every `needle`,
/// and nothing left in the output directory.
fn fails(args: &[&str], out_dir: &Path, needles: &[&str]) {
    let r = TOOL.run(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(
        err.lines().filter(|l| l.to_lowercase().contains("error")).count(),
        1,
        "{args:?}: one error line expected in {err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("cube-extract: error: "))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    for n in needles {
        assert!(line.contains(n), "'{n}' not in: {line}");
    }
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{args:?} left {left:?}");
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_leave_no_chunks() {
    let cube = synth(ForceLayout::Force37, PrjForm::Lines, 100, 8);
    let other = synth(ForceLayout::Force37, PrjForm::Lines, 60, 4);
    let out = cube.root.join("chunks");
    let o = s(&out).to_string();
    let files = read_tile(&cube.tile_dir);
    let name = |i: usize, p: Product| Level2Name::new(files[i].0, files[i].1, p).to_string();
    let t = cube.tile_dir.clone();
    let tile = s(&t);

    // Mixed band counts in the sensor selection, and an empty date range: refused before reading.
    fails(
        &["--tile", tile, "--out-dir", &o, "--sensors", "SEN2A,LND08"],
        &out,
        &["LND08", "6 bands"],
    );
    fails(
        &[
            "--tile",
            tile,
            "--out-dir",
            &o,
            "--start",
            "2021-06-01",
            "--end",
            "2021-05-01",
        ],
        &out,
        &["empty date range"],
    );
    fails(
        &["--tile", tile, "--out-dir", &o, "--start", "2030-01-01"],
        &out,
        &["no BOA files", tile],
    );
    fails(
        &["--tile", tile, "--out-dir", &o, "--screen", "clouds"],
        &out,
        &["--screen", "clouds"],
    );

    // A mask on another grid.
    let bad_mask = cube.root.join("bad.mask.tif");
    write_mask(&cube, &bad_mask, None, 10.0);
    fails(
        &["--tile", tile, "--mask", s(&bad_mask), "--out-dir", &o],
        &out,
        &["bad.mask.tif", "geotransform"],
    );
    write_mask(&cube, &bad_mask, Some(60), 0.0);
    fails(
        &["--tile", tile, "--mask", s(&bad_mask), "--out-dir", &o],
        &out,
        &["bad.mask.tif", "60 x 60"],
    );

    // A BOA from a different-size cube.
    let foreign = read_tile(&other.tile_dir);
    let intruder = Level2Name::new(Date::new(2021, 12, 30).unwrap(), Sensor::Sen2a, Product::Boa);
    let src = |p: Product| {
        other
            .tile_dir
            .join(Level2Name::new(foreign[0].0, foreign[0].1, p).to_string())
    };
    std::fs::copy(src(Product::Boa), t.join(intruder.to_string())).unwrap();
    std::fs::copy(
        src(Product::Qai),
        t.join(intruder.with_product(Product::Qai).to_string()),
    )
    .unwrap();
    fails(
        &["--tile", tile, "--out-dir", &o],
        &out,
        &[&intruder.to_string(), "60 x 60"],
    );

    // That BOA without its QAI.
    std::fs::remove_file(t.join(intruder.with_product(Product::Qai).to_string())).unwrap();
    fails(
        &["--tile", tile, "--out-dir", &o],
        &out,
        &[&intruder.to_string(), "no QAI"],
    );

    // A BOA with the wrong band count (a QAI file under a BOA name), then one that is not a TIFF.
    std::fs::copy(t.join(name(0, Product::Qai)), t.join(intruder.to_string())).unwrap();
    std::fs::copy(
        t.join(name(0, Product::Qai)),
        t.join(intruder.with_product(Product::Qai).to_string()),
    )
    .unwrap();
    fails(
        &["--tile", tile, "--out-dir", &o],
        &out,
        &[&intruder.to_string(), "1 bands, expected 10"],
    );
    std::fs::write(t.join(intruder.to_string()), b"not a tiff at all").unwrap();
    fails(
        &["--tile", tile, "--out-dir", &o],
        &out,
        &[&intruder.to_string(), "cannot open"],
    );
    std::fs::remove_file(t.join(intruder.to_string())).unwrap();
    std::fs::remove_file(t.join(intruder.with_product(Product::Qai).to_string())).unwrap();
    TOOL.ok(&TOOL.run(&["--tile", tile, "--out-dir", &o]));
    std::fs::remove_dir_all(&out).unwrap();

    // A datacube-definition.prj that puts the tile elsewhere.
    let prj = cube.root.join("cube/datacube-definition.prj");
    let original = std::fs::read_to_string(&prj).unwrap();
    let mut def = treesits_core::CubeDefinition::parse(&original).unwrap();
    def.origin_map.0 += 1000.0;
    std::fs::write(&prj, def.to_prj(PrjForm::Lines)).unwrap();
    fails(
        &["--tile", tile, "--out-dir", &o],
        &out,
        &["datacube-definition.prj"],
    );
    std::fs::write(&prj, original).unwrap();

    // A truncated TIFF, late in the series: the error names it and no chunk survives, even those
    // other workers finished.
    let victim = t.join(name(files.len() - 1, Product::Boa));
    let len = std::fs::metadata(&victim).unwrap().len();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..(len as usize) * 2 / 3]).unwrap();
    fails(
        &["--tile", tile, "--out-dir", &o, "--threads", "2"],
        &out,
        &[victim.file_name().unwrap().to_str().unwrap()],
    );
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help*.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}

// S3 listings through a fault-injecting proxy in front of moto (issue 20): a tile directory of
// more than one listing page (S3 lists 1000 objects a page) is listed completely or not at all.

/// A tile on moto spanning two listing pages: 1000 empty objects named after the first date sort
/// between its Level-2 files and the later dates', so page 2 holds every later acquisition.
/// Returns the cube, the server, the tile's URL and its acquisition dates.
fn paged_tile() -> (Cube, Moto, String, Vec<Date>) {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 30, 6);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap().to_string();
    let moto = Moto::start();
    moto.upload_dir(&cube.root.join("cube"), "cube", "germany");
    let mut names: Vec<String> = std::fs::read_dir(&cube.tile_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let pad: Vec<String> = (0..1000)
        .map(|i| format!("{}_pad{i:04}.txt", &names[0][..8]))
        .collect();
    moto.put_empty("cube", &format!("germany/{tile}"), &pad);
    let mut dates: Vec<Date> = names
        .iter()
        .filter(|n| n.ends_with("_BOA.tif"))
        .map(|n| Level2Name::parse(n).unwrap().date)
        .collect();
    dates.dedup();
    assert!(dates.len() >= 4, "{names:?}");
    (cube, moto, format!("s3://cube/germany/{tile}"), dates)
}

/// cube-extract of `url` into `out` with `env` (and `extra`).
fn extract_s3(url: &str, out: &Path, env: &[(&str, String)], extra: &[(&str, &str)]) -> std::process::Output {
    TOOL.command()
        .args(["--tile", url, "--out-dir", s(out)])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The distinct dates of every observation in a directory of chunks.
fn extracted_dates(dir: &Path) -> Vec<Date> {
    let mut dates: Vec<Date> = read_dir_chunks(dir)
        .iter()
        .flat_map(|(_, _, c)| {
            c.date
                .iter()
                .map(|&d| Date::from_days_since_epoch(d))
                .collect::<Vec<_>>()
        })
        .collect();
    dates.sort();
    dates.dedup();
    dates
}

/// Fast retries: one, after 0.1 s.
const FAST_RETRY: [(&str, &str); 2] = [("GDAL_HTTP_MAX_RETRY", "1"), ("GDAL_HTTP_RETRY_DELAY", "0.1")];

#[test]
fn s3_listing_error_on_the_second_page_fails_instead_of_extracting_fewer_dates() {
    use treesits_testkit::fault_proxy::{Fault, FaultKind, FaultProxy};
    let (cube, moto, url, dates) = paged_tile();
    let direct = cube.root.join("direct");
    TOOL.ok(&extract_s3(&url, &direct, &moto.gdal_env(), &[]));
    assert_eq!(extracted_dates(&direct), dates);

    // Through the proxy, no fault: the same chunks.
    let proxy = FaultProxy::start(&moto, &[]);
    let via = cube.root.join("via");
    TOOL.ok(&extract_s3(&url, &via, &proxy.gdal_env(), &[]));
    let (a, b) = (read_dir_chunks(&via), read_dir_chunks(&direct));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1, &x.2), (&y.0, &y.1, &y.2));
    }
    assert!(proxy.requests().iter().any(|r| r.page == Some(2)));
    drop(proxy);

    // 503 on every second page: exit 1 naming the tile, nothing written (before the fix: exit 0
    // with the first date alone).
    let proxy = FaultProxy::start(&moto, &[Fault::new(FaultKind::Status(503), 2)]);
    let out = cube.root.join("failed");
    let r = extract_s3(&url, &out, &proxy.gdal_env(), &FAST_RETRY);
    TOOL.fails_with(&r, &format!("cannot list {url} completely"));
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
    assert!(proxy.faults_injected() >= 2);
    drop(proxy);

    // A 500 once: retried, every date extracted.
    let proxy = FaultProxy::start(&moto, &[Fault::new(FaultKind::Status(500), 2).times(1)]);
    let out = cube.root.join("retried");
    TOOL.ok(&extract_s3(&url, &out, &proxy.gdal_env(), &FAST_RETRY));
    assert_eq!(extracted_dates(&out), dates);
    assert_eq!(proxy.faults_injected(), 1);
}

#[test]
fn s3_listing_stall_or_damaged_page_fails_in_bounded_time() {
    use treesits_testkit::fault_proxy::{Fault, FaultKind, FaultProxy};
    let (cube, moto, url, dates) = paged_tile();
    // A stall: cut by the (shortened) GDAL_HTTP_TIMEOUT, not a hang.
    let proxy = FaultProxy::start(&moto, &[Fault::new(FaultKind::Stall, 2)]);
    let out = cube.root.join("stalled");
    let started = std::time::Instant::now();
    let r = extract_s3(
        &url,
        &out,
        &proxy.gdal_env(),
        &[FAST_RETRY[0], FAST_RETRY[1], ("GDAL_HTTP_TIMEOUT", "2")],
    );
    let took = started.elapsed();
    TOOL.fails_with(&r, &format!("cannot list {url} completely"));
    assert!(took < std::time::Duration::from_secs(40), "took {took:?}");
    drop(proxy);
    // A truncated, garbled or quietly wrong page: an error every time it persists, the full
    // result when it happens once.
    for kind in [FaultKind::Truncate, FaultKind::Garble, FaultKind::WrongSizes] {
        let proxy = FaultProxy::start(&moto, &[Fault::new(kind, 2)]);
        let out = cube.root.join(format!("bad-{kind:?}"));
        let r = extract_s3(&url, &out, &proxy.gdal_env(), &FAST_RETRY);
        TOOL.fails_with(&r, &format!("cannot list {url} completely"));
        drop(proxy);
        let proxy = FaultProxy::start(&moto, &[Fault::new(kind, 2).times(1)]);
        let out = cube.root.join(format!("once-{kind:?}"));
        TOOL.ok(&extract_s3(&url, &out, &proxy.gdal_env(), &FAST_RETRY));
        assert_eq!(extracted_dates(&out), dates, "{kind:?}");
        assert_eq!(proxy.faults_injected(), 1, "{kind:?}");
    }
}

/// The chunk files in `dir` (not the hidden files beside them), as [`read_dir_chunks`] reads them.
fn visible_chunks(dir: &Path) -> Vec<(String, ChunkMetadata, ChunkColumns)> {
    let copy = tempfile::tempdir().unwrap();
    for n in file_names(dir).into_iter().filter(|n| !n.starts_with('.')) {
        std::fs::copy(dir.join(&n), copy.path().join(&n)).unwrap();
    }
    read_dir_chunks(copy.path())
}

/// Killed while renaming its chunks into a directory holding an earlier run's chunks of the tile
/// (another date window), a run leaves chunks missing — which mosaic refuses by the chunk count —
/// never a set mixing the two runs' windows. (Before: the renames replaced the old chunks one by
/// one, leaving chunks of both windows that predict and mosaic mapped with exit 0.)
#[test]
fn a_run_killed_while_renaming_never_leaves_chunks_of_two_runs() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 60, 6);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap().to_string();
    let out = cube.root.join("chunks");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "--tile",
            s(&cube.tile_dir),
            "--out-dir",
            s(&out),
            "--chunk-rows",
            "20",
        ];
        v.extend_from_slice(extra);
        v.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    TOOL.ok(&TOOL.run(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>()));
    let first = visible_chunks(&out);
    assert_eq!(first.len(), 3);
    let o = TOOL
        .command()
        .args(args(&["--start", "2021-06-01"]))
        .env("TREESITS_TEST_ABORT", "extract-rename")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        None,
        "killed while renaming: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left = visible_chunks(&out);
    assert_eq!(
        left.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        vec![format!("{tile}_chunk0000.arrows")],
        "the killed run's first chunk only; none of the earlier run's"
    );
    assert_ne!(
        left[0].1.date_start, first[0].1.date_start,
        "the chunk is the new run's"
    );
    assert_eq!(left[0].1.chunk_count, 3, "its count says two chunks are missing");
    // The next run completes the directory.
    TOOL.ok(&TOOL.run(
        &args(&["--start", "2021-06-01"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let all = visible_chunks(&out);
    assert_eq!(all.len(), 3);
    assert_eq!(
        file_names(&out).len(),
        3,
        "the killed run's lock and partial files are gone"
    );
    assert!(all.iter().all(|c| c.1.date_start == left[0].1.date_start));
}

/// A second run of the same tile into one directory is refused while the first holds the tile's
/// lock (`<out-dir>/.<tile>.lock`); hidden partial chunks of killed runs of the tile are removed,
/// other tiles' are not. (Before: both runs wrote, partial files stayed for ever.)
#[test]
fn runs_of_one_tile_into_one_directory_take_turns_and_clean_up_killed_runs() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 40, 2);
    let tile = cube.tile_dir.file_name().unwrap().to_str().unwrap().to_string();
    let out = cube.root.join("chunks");
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::File::create(out.join(format!(".{tile}.lock"))).unwrap();
    lock.lock().unwrap();
    let run = || TOOL.run(&["--tile", s(&cube.tile_dir), "--out-dir", s(&out), "--quiet"]);
    let o = run();
    TOOL.fails_with(&o, "another run is writing");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&tile));
    assert_eq!(file_names(&out), vec![format!(".{tile}.lock")]);
    drop(lock);
    let mine = format!(".{tile}_chunk0000.partial-999999.arrows");
    let other = ".X9999_Y9999_chunk0000.partial-999999.arrows".to_string();
    for n in [&mine, &other] {
        std::fs::write(out.join(n), vec![1u8; 1 << 20]).unwrap();
    }
    TOOL.ok(&run());
    assert_eq!(file_names(&out), vec![other, format!("{tile}_chunk0000.arrows")]);
}

/// A file named like an acquisition but with a date no calendar has is skipped with one warning
/// naming it, once for the tile. (Before: skipped in silence.)
#[test]
fn a_level2_name_with_an_impossible_date_is_warned_about_once() {
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 20, 2);
    for n in ["20210230_LEVEL2_SEN2A_BOA.tif", "20210230_LEVEL2_SEN2A_QAI.tif"] {
        let any = file_names(&cube.tile_dir)
            .into_iter()
            .find(|f| f.ends_with("_BOA.tif"))
            .unwrap();
        std::fs::copy(cube.tile_dir.join(any), cube.tile_dir.join(n)).unwrap();
    }
    let out = cube.root.join("chunks");
    let o = TOOL.run(&["--tile", s(&cube.tile_dir), "--out-dir", s(&out), "--quiet"]);
    TOOL.ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("without a valid date"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("WARN"), "{err}");
    assert!(warnings[0].contains("2 files"), "{err}");
    assert!(
        warnings[0]
            .contains("20210230_LEVEL2_SEN2A_BOA.tif (invalid date '20210230': no such day in the calendar)"),
        "{err}"
    );
    assert_eq!(read_dir_chunks(&out).len(), 1);
}

/// Every chunk file in `dir`, sorted by name, with all its batches (a chunk cut to fit the memory
/// budget holds several).
fn read_dir_batches(dir: &Path) -> Vec<(ChunkMetadata, Vec<ChunkColumns>)> {
    file_names(dir)
        .into_iter()
        .map(|n| read_chunks(std::fs::File::open(dir.join(&n)).unwrap()).unwrap())
        .collect()
}

/// The column range a batch covers, checking it is one block of its chunk's rows, row-major.
fn batch_columns(meta: &ChunkMetadata, c: &ChunkColumns) -> (u32, u32) {
    let w = meta.window;
    let (c0, c1) = (*c.col.iter().min().unwrap(), *c.col.iter().max().unwrap() + 1);
    assert!(c
        .row
        .iter()
        .all(|&r| r as usize >= w.row && (r as usize) < w.row + w.rows));
    let positions: Vec<(u32, u32)> = c.row.iter().copied().zip(c.col.iter().copied()).collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "row-major within a batch"
    );
    (c0, c1)
}

#[test]
fn chunks_cut_into_column_batches_hold_exactly_the_files_values() {
    // Tiled files are cut along their 256-px blocks, strips (30-row strips of this 300 px tile)
    // in 64-column ranges from one decode of each strip through the spill; with a mask, and with a
    // limit between one block and the whole window.
    for (layout, size) in [
        (ForceLayout::Force38, 600),
        (ForceLayout::Force39, 600),
        (ForceLayout::Force37, 300),
    ] {
        let cube = synth(layout, PrjForm::Tagged, size, 8);
        let mask_path = cube.root.join("mask.tif");
        let mask = write_mask(&cube, &mask_path, None, 0.0);
        for masked in [false, true] {
            let (want, _) = expected(
                &cube.tile_dir,
                size,
                &QaiScreen::force_default(),
                |_, _| true,
                masked.then_some(mask.as_slice()),
            );
            let whole = cube.root.join(format!("whole-{masked}"));
            let mut args = vec![
                "--tile",
                s(&cube.tile_dir),
                "--out-dir",
                s(&whole),
                "--threads",
                "2",
            ];
            if masked {
                args.extend(["--mask", s(&mask_path)]);
            }
            TOOL.ok(&TOOL.run(&args));
            let one: Vec<_> = read_dir_batches(&whole);
            assert!(
                one.iter().all(|(_, b)| b.len() == 1),
                "{layout:?}: the default budget holds a chunk"
            );
            // Three fifths of the smallest chunk: every chunk needs more than one batch, but fewer
            // than one per block (or per 64 columns).
            let smallest = one
                .iter()
                .map(|(_, b)| treesits_cube::split::batch_bytes(b[0].pixels(), b[0].observations(), 10))
                .min()
                .unwrap();
            let mid = (smallest * 3 / 5).to_string();
            assert_eq!(
                series_of(&one.into_iter().flat_map(|c| c.1).collect::<Vec<_>>()),
                want
            );
            for limit in ["1", mid.as_str()] {
                let cut = cube.root.join(format!("cut-{masked}-{limit}"));
                let mut a = args.clone();
                a[3] = s(&cut);
                a.extend(["--batch-bytes", limit]);
                TOOL.ok(&TOOL.run(&a));
                let chunks = read_dir_batches(&cut);
                let mut between = false;
                let mut batches = Vec::new();
                for (meta, b) in chunks {
                    let ranges: Vec<(u32, u32)> = b.iter().map(|c| batch_columns(&meta, c)).collect();
                    assert!(
                        ranges.windows(2).all(|r| r[0].1 <= r[1].0),
                        "{layout:?}: ranges in column order: {ranges:?}"
                    );
                    let align = if layout == ForceLayout::Force37 { 64 } else { 256 };
                    assert!(
                        ranges
                            .iter()
                            .all(|r| (r.0 as usize).is_multiple_of(align) || masked),
                        "{ranges:?}"
                    );
                    if limit == "1" {
                        assert_eq!(
                            b.len(),
                            size.div_ceil(align),
                            "{layout:?} {masked}: one batch per {align} columns"
                        );
                    } else {
                        let max: usize = limit.parse().unwrap();
                        for (c, r) in b.iter().zip(&ranges) {
                            let bytes = treesits_cube::split::batch_bytes(c.pixels(), c.observations(), 10);
                            assert!(
                                bytes <= max || r.1 - r.0 <= align as u32,
                                "{layout:?}: {bytes} > {max} in {r:?}"
                            );
                        }
                        between |= b.len() > 1 && b.len() < size.div_ceil(align);
                    }
                    batches.extend(b);
                }
                assert!(
                    limit == "1" || between,
                    "{layout:?} {masked}: some chunk cut in fewer parts than blocks"
                );
                assert_eq!(
                    series_of(&batches),
                    want,
                    "{layout:?}, mask {masked}, --batch-bytes {limit}"
                );
            }
        }
    }
}

#[test]
fn a_block_with_more_observations_than_a_record_batch_holds_is_written_as_runs_of_its_rows() {
    // 48 MiB lets one worker assemble batches of at most 16 MiB, and so write record batches of at
    // most 16 MiB: a 256 px block at 24 dates holds about 30 MB of observations, so it is written
    // as runs of consecutive pixels (row ranges of the block), and every value is still the file's.
    let cube = synth(ForceLayout::Force38, PrjForm::Tagged, 300, 24);
    let (want, _) = expected(
        &cube.tile_dir,
        300,
        &QaiScreen::force_default(),
        |_, _| true,
        None,
    );
    let out = cube.root.join("chunks");
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--threads",
        "1",
        "--memory",
        "48M",
    ]);
    TOOL.ok(&r);
    let log = treesits_testkit::cli::stderr(&r);
    assert!(
        log.contains("batches of at most 16.0 MiB (written as record batches of at most 16.0 MiB)"),
        "{log}"
    );
    let limit = 16 << 20;
    let mut runs_of_one_block = 0;
    let mut batches = Vec::new();
    for (meta, b) in read_dir_batches(&out) {
        let ranges: Vec<(u32, u32)> = b.iter().map(|c| batch_columns(&meta, c)).collect();
        for (c, r) in b.iter().zip(&ranges) {
            assert!(c.bytes() <= limit, "{r:?}: {} bytes", c.bytes());
        }
        // Runs of one block follow each other: same columns, the rows after the previous run's.
        for (pair, cols) in b.windows(2).zip(ranges.windows(2)) {
            if cols[0] == cols[1] {
                runs_of_one_block += 1;
                let last = (pair[0].row.last(), pair[0].col.last());
                let first = (pair[1].row.first(), pair[1].col.first());
                assert!(last < first, "runs in row-major order");
            }
        }
        batches.extend(b);
    }
    assert!(runs_of_one_block > 0, "some block was cut into runs");
    assert_eq!(series_of(&batches), want);
}

#[test]
fn a_full_spill_directory_fails_the_extraction_and_leaves_no_chunk() {
    let Some(disk) = treesits_testkit::disk::Disk::mount("cube-extract spill disk-full test", 256 << 10)
    else {
        return;
    };
    // A 30-row strip window of 300 px × 8 dates spills ~0.7 MB before any chunk is written.
    let cube = synth(ForceLayout::Force37, PrjForm::Tagged, 300, 8);
    let out = disk.dir.join("chunks");
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out-dir",
        s(&out),
        "--batch-bytes",
        "1",
        "--threads",
        "1",
    ]);
    TOOL.fails_with(&r, "cannot write a temporary spill file in");
    let left = file_names(&out);
    assert!(left.iter().all(|n| n.ends_with(".lock")), "{left:?}");
}

#[test]
fn the_memory_budget_is_a_size_from_the_flag_or_the_environment_and_the_log_says_how_it_is_spent() {
    let cube = synth(ForceLayout::Force37, PrjForm::Tagged, 100, 6);
    let bad = TOOL.run(&["--tile", s(&cube.tile_dir), "--out-dir", "x", "--memory", "2X"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let err = treesits_testkit::cli::stderr(&bad);
    assert!(
        err.contains("'2X' is not a memory size") && err.contains("e.g. 1500M"),
        "{err}"
    );
    let out = cube.root.join("chunks");
    let r = TOOL
        .command()
        .args([
            "--tile",
            s(&cube.tile_dir),
            "--out-dir",
            s(&out),
            "--threads",
            "2",
        ])
        .env("TREESITS_MEMORY", "40M")
        .output()
        .unwrap();
    TOOL.ok(&r);
    let log = treesits_testkit::cli::stderr(&r);
    // 40 MiB cannot hold two workers' windows beside a 16 MiB batch: one runs, and says so.
    assert!(
        log.contains("memory budget 40.0 MiB (--memory): 1 workers"),
        "{log}"
    );
    assert!(log.contains("holds the windows of 1 of 2 workers"), "{log}");
    assert_eq!(
        file_names(&out).iter().filter(|n| n.ends_with(".arrows")).count(),
        10
    );
}
