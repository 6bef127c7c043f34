//! End-to-end tests of `treesits-synth`: run the real binary, read what it wrote back with GDAL.

use std::path::{Path, PathBuf};
use std::process::Output;

use gdal::raster::GdalDataType;
use gdal::vector::LayerAccess;
use gdal::{Dataset, Metadata};
use treesits_core::level2::{LANDSAT_BANDS, SENTINEL2_BANDS};
use treesits_core::qai::{CloudState, Qai};
use treesits_core::{CubeDefinition, Level2Name, Product, Sensor, TileId};
use treesits_testkit::cli::{assert_snapshot, Tool};
use treesits_testkit::disk;
use treesits_testkit::Scene;

const TOOL: Tool = Tool::new("treesits-synth", env!("CARGO_BIN_EXE_treesits-synth"));

fn synth(out: &Path, args: &[&str]) -> Output {
    TOOL.command()
        .arg("--out")
        .arg(out)
        .args(args)
        .arg("--quiet")
        .output()
        .expect("treesits-synth runs")
}

fn ok(out: &Path, args: &[&str]) -> serde_json::Value {
    let o = synth(out, args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn read_band_i16(ds: &Dataset, band: usize) -> Vec<i16> {
    let b = ds.rasterband(band).unwrap();
    let (w, h) = ds.raster_size();
    b.read_as::<i16>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .into_shape_and_vec()
        .1
}

#[test]
fn cube_files_have_force_types_names_bands_and_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let m = ok(
        &out,
        &["--tiles", "2", "--size", "64", "--dates", "8", "--seed", "3"],
    );
    let def =
        CubeDefinition::parse(&std::fs::read_to_string(out.join("cube/datacube-definition.prj")).unwrap())
            .unwrap();
    // Default form is FORCE >= 3.8's tagged form, tile size scaled to 64 px × 10 m.
    assert!(std::fs::read_to_string(out.join("cube/datacube-definition.prj"))
        .unwrap()
        .starts_with("PROJECTION = "));
    assert_eq!(def.tile_size, (640.0, 640.0));
    assert_eq!(def.origin_map, (2_456_026.25, 4_574_919.5));
    let grid = def.grid(10.0).unwrap();

    let tiles: Vec<TileId> = m["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tile_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(tiles.len(), 2);
    assert_eq!(tiles[1].x, tiles[0].x + 1);
    let mut boa_count = 0;
    for tile in &tiles {
        let tdir = out.join("cube").join(tile.to_string());
        let names: Vec<String> = files(&tdir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 16, "8 acquisitions × BOA + QAI");
        for name in &names {
            let n = Level2Name::parse(name).unwrap();
            let ds = Dataset::open(tdir.join(name)).unwrap();
            assert_eq!(ds.raster_size(), (64, 64));
            assert_eq!(ds.geo_transform().unwrap(), grid.geotransform(*tile));
            assert_eq!(ds.spatial_ref().unwrap().auth_code().unwrap(), 3035);
            assert_eq!(
                ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
                Some("ZSTD")
            );
            let b1 = ds.rasterband(1).unwrap();
            assert_eq!(b1.band_type(), GdalDataType::Int16);
            assert_eq!(b1.block_size(), (256, 256));
            match n.product {
                Product::Boa => {
                    boa_count += 1;
                    assert_eq!(ds.raster_count(), 10);
                    for (i, band) in SENTINEL2_BANDS.iter().enumerate() {
                        let b = ds.rasterband(i + 1).unwrap();
                        assert_eq!(b.description().unwrap(), *band);
                        assert_eq!(b.no_data_value(), Some(-9999.0));
                        assert_eq!(b.metadata_item("Scale", "FORCE").as_deref(), Some("10000.000"));
                    }
                }
                Product::Qai => {
                    assert_eq!(ds.raster_count(), 1);
                    assert_eq!(b1.no_data_value(), Some(1.0));
                    assert!(tdir.join(n.with_product(Product::Boa).to_string()).exists());
                }
                other => panic!("unexpected product {other}"),
            }
        }
    }
    assert_eq!(boa_count, 16);
}

#[test]
fn old_layout_and_old_prj_form() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    ok(
        &out,
        &[
            "--tiles",
            "1",
            "--size",
            "60",
            "--dates",
            "3",
            "--layout",
            "force37",
            "--prj-form",
            "lines",
        ],
    );
    let text = std::fs::read_to_string(out.join("cube/datacube-definition.prj")).unwrap();
    assert_eq!(text.lines().count(), 7);
    assert!(text.starts_with("PROJCS["));
    let def = CubeDefinition::parse(&text).unwrap();
    assert_eq!(def.block_size.1, 60.0, "blocks are a tenth of the tile");
    let boa = files(&out.join("cube"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("_BOA.tif"))
        .unwrap();
    let ds = Dataset::open(&boa).unwrap();
    assert_eq!(
        ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
        Some("LZW")
    );
    assert_eq!(
        ds.metadata_item("INTERLEAVE", "IMAGE_STRUCTURE").as_deref(),
        Some("BAND")
    );
    // Full-width strips, 6 rows high.
    assert_eq!(ds.rasterband(1).unwrap().block_size(), (60, 6));
}

#[test]
fn pixels_are_what_the_scene_says_and_clouds_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let m = ok(
        &out,
        &["--tiles", "1", "--size", "96", "--dates", "12", "--seed", "11"],
    );
    let scene = Scene::new(11, 2021, 12, &[Sensor::Sen2a, Sensor::Sen2b]);
    let tile: TileId = m["tiles"][0]["tile_id"].as_str().unwrap().parse().unwrap();
    let truth_ds = Dataset::open(out.join(m["tiles"][0]["truth"].as_str().unwrap())).unwrap();
    let truth: Vec<u8> = truth_ds
        .rasterband(1)
        .unwrap()
        .read_as::<u8>((0, 0), (96, 96), (96, 96), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    let (gx0, gy0) = (i64::from(tile.x) * 96, i64::from(tile.y) * 96);

    let (mut opaque_blue, mut clear_blue) = (Vec::new(), Vec::new());
    for (k, acq) in scene.acquisitions.iter().enumerate() {
        let name = Level2Name::new(acq.date, acq.sensor, Product::Boa);
        assert_eq!(
            m["acquisitions"][k]["date"].as_str().unwrap(),
            acq.date.to_string()
        );
        let boa = Dataset::open(out.join("cube").join(tile.to_string()).join(name.to_string())).unwrap();
        let qai = Dataset::open(
            out.join("cube")
                .join(tile.to_string())
                .join(name.with_product(Product::Qai).to_string()),
        )
        .unwrap();
        let q = read_band_i16(&qai, 1);
        let bands: Vec<Vec<i16>> = (1..=10).map(|b| read_band_i16(&boa, b)).collect();
        let mut opaque = 0usize;
        for i in 0..96 * 96 {
            let (row, col) = (i / 96, i % 96);
            let o = scene.observe(acq, gx0 + col as i64, gy0 + row as i64, truth[i]);
            assert_eq!(q[i], o.qai, "QAI at {row},{col} of {name}");
            for (b, band) in bands.iter().enumerate() {
                assert_eq!(band[i], o.boa[b], "band {b} at {row},{col} of {name}");
            }
            let qa = Qai(q[i] as u16);
            // Nodata in QAI exactly where every band is −9999.
            assert_eq!(qa.nodata(), bands.iter().all(|b| b[i] == -9999));
            if qa.nodata() {
                continue;
            }
            match qa.cloud() {
                CloudState::Opaque => {
                    opaque += 1;
                    opaque_blue.push(f64::from(bands[0][i]));
                }
                CloudState::Clear if !qa.shadow() && !qa.snow() => clear_blue.push(f64::from(bands[0][i])),
                _ => {}
            }
            if qa.snow() {
                assert!(
                    !(75..=330).contains(&acq.date.day_of_year()),
                    "snow only in winter"
                );
            }
        }
        // Cloud cover roughly as planned (the field is coherent, so a small tile varies).
        let share = opaque as f64 / (96.0 * 96.0);
        if acq.cloud_cover < 0.05 {
            assert!(share < 0.25, "{name}: {share}");
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(opaque_blue.len() > 500 && clear_blue.len() > 5000);
    assert!(
        mean(&opaque_blue) > 2500.0,
        "clouds are bright: {}",
        mean(&opaque_blue)
    );
    assert!(
        mean(&clear_blue) < 700.0,
        "clear forest is dark in blue: {}",
        mean(&clear_blue)
    );
}

#[test]
fn truth_landcover_and_aoi_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let m = ok(&out, &["--tiles", "2", "--size", "128", "--dates", "2"]);
    let mut all = [0u64; 11];
    for t in m["tiles"].as_array().unwrap() {
        let ds = Dataset::open(out.join(t["truth"].as_str().unwrap())).unwrap();
        let b = ds.rasterband(1).unwrap();
        assert_eq!(b.band_type(), GdalDataType::UInt8);
        assert_eq!(b.no_data_value(), Some(255.0));
        let v = b
            .read_as::<u8>((0, 0), (128, 128), (128, 128), None)
            .unwrap()
            .into_shape_and_vec()
            .1;
        let counts: Vec<u64> = t["class_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        for c in 0..11u8 {
            let n = v.iter().filter(|x| **x == c).count() as u64;
            assert_eq!(n, counts[usize::from(c)]);
            all[usize::from(c)] += n;
        }
        assert!(v.iter().all(|x| *x <= 10));
    }
    assert!(all.iter().all(|n| *n > 0), "every class present: {all:?}");

    // Land cover: EPSG:4326, two parts, trees (10) about as common as forest in the truth.
    let forest_share = all[..10].iter().sum::<u64>() as f64 / all.iter().sum::<u64>() as f64;
    let mut trees = 0usize;
    let mut total = 0usize;
    for p in m["landcover"].as_array().unwrap() {
        let ds = Dataset::open(out.join(p.as_str().unwrap())).unwrap();
        assert_eq!(ds.spatial_ref().unwrap().auth_code().unwrap(), 4326);
        let (w, h) = ds.raster_size();
        let v = ds
            .rasterband(1)
            .unwrap()
            .read_as::<u8>((0, 0), (w, h), (w, h), None)
            .unwrap()
            .into_shape_and_vec()
            .1;
        assert!(v.iter().all(|x| [10, 30, 40, 50].contains(x)));
        trees += v.iter().filter(|x| **x == 10).count();
        total += v.len();
    }
    assert_eq!(m["landcover"].as_array().unwrap().len(), 2);
    let share = trees as f64 / total as f64;
    assert!((share - forest_share).abs() < 0.08, "{share} vs {forest_share}");

    // AOI: three districts in EPSG:4326, one with a hole, one multipolygon.
    let ds = Dataset::open(out.join("aoi.gpkg")).unwrap();
    let mut layer = ds.layer_by_name("districts").unwrap();
    assert_eq!(layer.spatial_ref().unwrap().auth_code().unwrap(), 4326);
    let feats: Vec<(String, usize, usize)> = layer
        .features()
        .map(|f| {
            let g = f.geometry().unwrap();
            let parts = g.geometry_count();
            let rings = (0..parts).map(|i| g.get_geometry(i).geometry_count()).sum();
            (
                f.field_as_string(f.field_index("name").unwrap())
                    .unwrap()
                    .unwrap(),
                parts,
                rings,
            )
        })
        .collect();
    assert_eq!(
        feats,
        vec![
            ("Nordwald".into(), 1, 2),
            ("Suedforst".into(), 2, 2),
            ("Auwald".into(), 1, 1)
        ]
    );
    let env = layer.get_extent().unwrap();
    assert!(
        env.MinX > 10.0 && env.MaxX < 13.0 && env.MinY > 48.0 && env.MaxY < 50.0,
        "{env:?}"
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--tiles", "1", "--size", "48", "--dates", "4"];
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    ok(&a, &[&args[..], &["--seed", "5"]].concat());
    ok(&b, &[&args[..], &["--seed", "5"]].concat());
    ok(&c, &[&args[..], &["--seed", "6"]].concat());
    let fa = files(&a);
    assert_eq!(fa.len(), files(&b).len());
    for p in &fa {
        let rel = p.strip_prefix(&a).unwrap();
        assert_eq!(
            std::fs::read(p).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
    let boa = |d: &Path| {
        let p = files(&d.join("cube"))
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with("_BOA.tif"))
            .unwrap();
        read_band_i16(&Dataset::open(p).unwrap(), 8)
    };
    assert_ne!(boa(&a), boa(&c));
}

#[test]
fn landsat_has_six_bands() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    ok(
        &out,
        &[
            "--tiles",
            "1",
            "--size",
            "32",
            "--dates",
            "4",
            "--sensors",
            "SEN2A,LND08",
        ],
    );
    let l = files(&out.join("cube"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("LND08_BOA.tif"))
        .unwrap();
    let ds = Dataset::open(l).unwrap();
    assert_eq!(ds.raster_count(), 6);
    let names: Vec<String> = (1..=6)
        .map(|i| ds.rasterband(i).unwrap().description().unwrap())
        .collect();
    assert_eq!(names, LANDSAT_BANDS);
}

#[test]
fn refuses_foreign_or_existing_output_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let o = synth(&foreign, &["--size", "32", "--dates", "2"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("treesits-synth: error: output directory"),
        "{err}"
    );
    assert!(err.contains("not written by treesits-synth"), "{err}");
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "mine"
    );

    let ours = dir.path().join("ours");
    ok(&ours, &["--size", "32", "--dates", "2", "--tiles", "1"]);
    let o = synth(&ours, &["--size", "32", "--dates", "2", "--tiles", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --force"));
    ok(
        &ours,
        &["--size", "32", "--dates", "3", "--tiles", "1", "--force"],
    );

    let o = synth(&dir.path().join("x"), &["--sensors", "SEN2A,LND06"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown sensor 'LND06'"));
    let o = synth(&dir.path().join("y"), &["--size", "8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--size must be 16..=10000 pixels, got 8"));
    // Nothing half-written is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}

/// Tiles so small that the German grid numbers them with five digits (`X10336_Y9025`) are refused:
/// no FORCE tool reads such a cube. (Before: written, then rejected by cube-extract.)
#[test]
fn sizes_that_give_non_force_tile_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let o = synth(&out, &["--size", "16", "--tiles", "1", "--dates", "1"]);
    TOOL.fails_with(&o, "not a FORCE tile id (Xdddd_Ydddd, four digits each)");
    assert!(!out.exists());
    // The smallest tiles the default grid still numbers with four digits are fine.
    let o = synth(&out, &["--size", "32", "--tiles", "1", "--dates", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `--threads` far beyond the CPUs is capped, with a warning, instead of starting 100000 threads
/// (which took minutes). Every tool starts its pool through `treesits_cli::start_thread_pool`.
#[test]
fn absurd_thread_counts_are_capped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let started = std::time::Instant::now();
    let o = synth(
        &out,
        &[
            "--size",
            "32",
            "--tiles",
            "1",
            "--dates",
            "1",
            "--threads",
            "100000",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        err.contains("--threads 100000 is more than 4 per CPU") && err.contains("WARN"),
        "{err}"
    );
    assert!(err.contains("using "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        started.elapsed().as_secs() < 60,
        "capped threads start at once ({cpus} CPUs)"
    );
}

/// A disk that fills during the run and frees again: the file GDAL failed to write is the error,
/// in one line, and no world is committed. (Before: exit 0, a thousand `_tiffWriteProc` lines.)
#[test]
fn a_disk_that_fills_and_frees_during_the_run_fails_it_in_one_line() {
    let Some(d) = disk::Disk::mount("treesits-synth disk-full test", 32 << 20) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let args = ["--size", "200", "--tiles", "1", "--dates", "6", "--threads", "1"];
    let measure = scratch.path().join("w");
    assert!(synth(&measure, &args).status.success());
    let total = disk::bytes(&measure);
    let out = d.dir.join("w");
    let watcher = d.fill_then_free(total / 3);
    let o = synth(&out, &args);
    assert!(watcher.stop(), "the disk never filled: the test proved nothing");
    TOOL.fails_with(&o, "writing ");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(".tif"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(treesits_testkit::cli::file_names(&d.dir), Vec::<String>::new());
}
