//! `assess` run as a program on rasters and points written here, with every expected number worked
//! out by hand in the comments; and its refusals of bad inputs.

use std::path::{Path, PathBuf};

use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{Geometry, LayerAccess, LayerOptions, OGRFieldType, OGRwkbGeometryType};
use gdal::{DriverManager, Metadata};
use serde_json::Value;
use treesits_testkit::cli::{assert_snapshot, s, stderr, Tool};

const TOOL: Tool = Tool::new("assess", env!("CARGO_BIN_EXE_assess"));
/// The test map: 10 × 10 pixels of 10 m in ETRS89-LAEA.
const X0: f64 = 4_321_000.0;
const Y0: f64 = 3_210_000.0;
const RES: f64 = 10.0;
const N: usize = 10;

fn laea() -> SpatialRef {
    let mut s = SpatialRef::from_epsg(3035).unwrap();
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    s
}

fn wgs84() -> SpatialRef {
    let mut s = SpatialRef::from_epsg(4326).unwrap();
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    s
}

/// The map: rows 0-4 class 0 (spruce, 50 px), rows 5-7 class 1 (pine, 30 px), rows 8-9 class 2
/// (beech, 19 px) with pixel (9, 9) nodata.
fn map_values() -> Vec<u8> {
    let mut v = vec![0u8; N * N];
    for r in 0..N {
        for c in 0..N {
            v[r * N + c] = match r {
                0..=4 => 0,
                5..=7 => 1,
                _ => 2,
            };
        }
    }
    v[9 * N + 9] = 255;
    v
}

fn write_raster(
    path: &Path,
    origin: (f64, f64),
    res: f64,
    size: (usize, usize),
    values: &[u8],
    srs: Option<&SpatialRef>,
    classes: bool,
) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver
        .create_with_band_type::<u8, _>(path, size.0, size.1, 1)
        .unwrap();
    ds.set_geo_transform(&[origin.0, res, 0.0, origin.1, 0.0, -res])
        .unwrap();
    if let Some(srs) = srs {
        ds.set_spatial_ref(srs).unwrap();
    }
    if classes {
        ds.set_metadata_item(
            "TREESITS_CLASSES",
            r#"[{"code":0,"name":"spruce","colour":[31,94,49]},{"code":1,"name":"pine","colour":[1,2,3]},{"code":2,"name":"beech","colour":[4,5,6]}]"#,
            "",
        )
        .unwrap();
    }
    let mut band = ds.rasterband(1).unwrap();
    band.set_no_data_value(Some(255.0)).unwrap();
    let mut buf = Buffer::new(size, values.to_vec());
    band.write((0, 0), size, &mut buf).unwrap();
}

fn write_map(dir: &Path) -> PathBuf {
    let p = dir.join("map.tif");
    write_raster(&p, (X0, Y0), RES, (N, N), &map_values(), Some(&laea()), true);
    p
}

/// Centre of map pixel (row, col) in lon/lat.
fn lonlat(row: f64, col: f64) -> (f64, f64) {
    let t = CoordTransform::new(&laea(), &wgs84()).unwrap();
    let mut x = [X0 + (col + 0.5) * RES];
    let mut y = [Y0 - (row + 0.5) * RES];
    let mut z = [0.0];
    t.transform_coords(&mut x, &mut y, &mut z).unwrap();
    (x[0], y[0])
}

/// Points in EPSG:4326 (or without CRS) with a string field `class`; `None` leaves it null.
fn write_points(path: &Path, srs: Option<&SpatialRef>, points: &[((f64, f64), Option<&str>)]) {
    let driver = DriverManager::get_driver_by_name("GPKG").unwrap();
    let mut ds = driver.create_vector_only(path).unwrap();
    let layer = ds
        .create_layer(LayerOptions {
            name: "samples",
            srs,
            ty: OGRwkbGeometryType::wkbPoint,
            options: None,
        })
        .unwrap();
    layer
        .create_defn_fields(&[("class", OGRFieldType::OFTString)])
        .unwrap();
    for ((x, y), class) in points {
        let mut g = Geometry::empty(OGRwkbGeometryType::wkbPoint).unwrap();
        g.add_point_2d((*x, *y));
        let mut f = gdal::vector::Feature::new(layer.defn()).unwrap();
        f.set_geometry(g).unwrap();
        if let Some(c) = class {
            f.set_field_string(0, c).unwrap();
        }
        f.create(&layer).unwrap();
    }
    ds.close().unwrap();
}

/// Adds an empty point layer `name` to the vector at `path`.
fn add_layer(path: &Path, name: &str) {
    let mut ds = gdal::Dataset::open_ex(
        path,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE | gdal::GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .unwrap();
    ds.create_layer(LayerOptions {
        name,
        srs: Some(&wgs84()),
        ty: OGRwkbGeometryType::wkbPoint,
        options: None,
    })
    .unwrap();
    ds.close().unwrap();
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The reference raster: the map with (9, 9) = beech, 5 pixels of row 0 pine, 3 pixels of row 5
/// beech and (8, 0), (8, 1) nodata.
fn reference_values() -> Vec<u8> {
    let mut v = map_values();
    v[9 * N + 9] = 2;
    v[..5].fill(1);
    for c in 0..3 {
        v[5 * N + c] = 2;
    }
    v[8 * N] = 255;
    v[8 * N + 1] = 255;
    v
}

#[test]
fn a_reference_raster_is_compared_pixel_by_pixel() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path());
    let reference = dir.path().join("truth.tif");
    write_raster(
        &reference,
        (X0, Y0),
        RES,
        (N, N),
        &reference_values(),
        Some(&laea()),
        false,
    );
    let out = dir.path().join("report");
    let o = TOOL.run(&[
        "--map",
        s(&map),
        "--reference",
        s(&reference),
        "--out-dir",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "stdout carries data only");
    let j = read_json(&out.join("accuracy.json"));
    assert_eq!(j["format"], "treesits-accuracy-report");
    assert_eq!(j["reference_kind"], "raster");
    // rows = reference, cols = map: spruce 45 | pine 5 map-spruce, 27 | beech 3 map-pine, 17.
    assert_eq!(
        j["confusion_matrix"],
        serde_json::json!([[45, 0, 0], [5, 27, 0], [0, 3, 17]])
    );
    assert_eq!(j["samples"], 97);
    assert_eq!(j["dropped"]["map_nodata"], 1);
    assert_eq!(j["dropped"]["reference_nodata"], 2);
    let names: Vec<&str> = j["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spruce", "pine", "beech"]);
    // OA = 89/97; p_e = (45·50 + 32·30 + 20·17)/97² = 3550/9409; kappa = 5083/5859.
    assert!(close(f(&j["overall_accuracy"]), 89.0 / 97.0));
    assert!(close(f(&j["kappa"]), 5083.0 / 5859.0));
    let pc = &j["per_class"];
    assert!(close(f(&pc[0]["precision"]), 0.9) && close(f(&pc[0]["recall"]), 1.0));
    assert!(close(f(&pc[1]["precision"]), 0.9) && close(f(&pc[1]["recall"]), 27.0 / 32.0));
    assert!(close(f(&pc[2]["precision"]), 1.0) && close(f(&pc[2]["recall"]), 0.85));
    // Area: 99 mapped pixels of 100 m² = 0.99 ha; a census gives the reference's own areas:
    // spruce 45 px, pine 5/99·99 + 27 = 32 px, beech 3 + 19 = 22 px (its 2 nodata pixels count as
    // mapped beech, all correct) → 0.45, 0.32, 0.22 ha.
    let area = &j["area_adjusted"];
    assert_eq!(area["area_unit"], "ha");
    assert_eq!(area["pixel_area_m2"], 100.0);
    assert!(close(f(&area["mapped_area_total"]), 0.99));
    let est: Vec<f64> = area["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| f(&c["estimated_area"]["estimate"]))
        .collect();
    assert!(
        close(est[0], 0.45) && close(est[1], 0.32) && close(est[2], 0.22),
        "{est:?}"
    );
    assert_eq!(area["per_class"][2]["mapped_pixels"], 19);
    let md = std::fs::read_to_string(out.join("accuracy.md")).unwrap();
    assert!(
        md.contains("**Overall accuracy 0.918**, Cohen's kappa 0.868"),
        "{md}"
    );
    assert!(md.contains("| **pine** | 5 | **27** | 0 | 32 |"), "{md}");
    // The whole report, so a changed layout shows in review (temporary paths redacted).
    let md = md.replace(dir.path().to_str().unwrap(), "[TMP]");
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "accuracy_raster.md", &md);
    assert!(
        stderr(&o).contains("97 samples (raster): overall accuracy 0.918, kappa 0.868"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn points_in_another_crs_give_the_stratified_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path());
    let pts = dir.path().join("samples.gpkg");
    // Stratum spruce (50 px): 3 × spruce, 1 × pine; pine (30 px): 2 × pine, 1 × beech;
    // beech (19 px): 2 × beech; plus one point off the map, one on map nodata, one without class.
    // Classes are given as codes and as names.
    write_points(
        &pts,
        Some(&wgs84()),
        &[
            (lonlat(0.0, 0.0), Some("0")),
            (lonlat(1.0, 3.0), Some("spruce")),
            (lonlat(2.0, 7.0), Some("0")),
            (lonlat(4.0, 9.0), Some("Pine")),
            (lonlat(5.0, 5.0), Some("1")),
            (lonlat(6.0, 1.0), Some("1")),
            (lonlat(7.0, 8.0), Some("beech")),
            (lonlat(8.0, 4.0), Some("2")),
            (lonlat(9.0, 2.0), Some("2")),
            (lonlat(-3.0, 2.0), Some("2")),
            (lonlat(9.0, 9.0), Some("2")),
            (lonlat(3.0, 3.0), None),
        ],
    );
    let json = dir.path().join("acc.json");
    let md = dir.path().join("acc.md");
    let o = TOOL.run(&[
        "--map",
        s(&map),
        "--reference",
        s(&pts),
        "--json",
        s(&json),
        "--markdown",
        s(&md),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = read_json(&json);
    assert_eq!(j["reference_kind"], "points");
    assert_eq!(j["field"], "class");
    assert_eq!(
        j["confusion_matrix"],
        serde_json::json!([[3, 0, 0], [1, 2, 0], [0, 1, 2]])
    );
    assert_eq!(j["dropped"]["outside_map"], 1);
    assert_eq!(j["dropped"]["map_nodata"], 1);
    assert_eq!(j["dropped"]["reference_nodata"], 1);
    assert!(close(f(&j["overall_accuracy"]), 7.0 / 9.0));
    // W = 50/99, 30/99, 19/99. p̂_spruce = W0·3/4 = 37.5/99, p̂_pine = W0/4 + W1·2/3 = 32.5/99,
    // p̂_beech = W1/3 + W2 = 29/99: areas 37.5, 32.5, 29 px = 0.375, 0.325, 0.29 ha.
    let a = &j["area_adjusted"];
    let per: Vec<&Value> = a["per_class"].as_array().unwrap().iter().collect();
    assert!(close(f(&per[0]["estimated_area"]["estimate"]), 0.375));
    assert!(close(f(&per[1]["estimated_area"]["estimate"]), 0.325));
    assert!(close(f(&per[2]["estimated_area"]["estimate"]), 0.29));
    // SE(p̂_spruce) = sqrt(W0² · ¾ · ¼ / 3) = W0 / 4 → SE(area) = 12.5 px = 0.125 ha.
    assert!(close(f(&per[0]["estimated_area"]["se"]), 0.125));
    // Stratified overall accuracy = (37.5 + 20 + 19)/99; user's accuracies 3/4, 2/3, 1.
    assert!(close(f(&a["overall_accuracy"]["estimate"]), 76.5 / 99.0));
    assert!(close(f(&per[1]["users_accuracy"]["estimate"]), 2.0 / 3.0));
    // Producer's of pine = (20/99) / (32.5/99).
    assert!(close(f(&per[1]["producers_accuracy"]["estimate"]), 20.0 / 32.5));
    assert!(close(f(&per[0]["mapped_proportion"]), 50.0 / 99.0));
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("## Area-adjusted estimates (Olofsson et al. 2014)"),
        "{text}"
    );
    assert!(text.contains("| 0 | spruce | 0.50 | 0.5051 | 0.750 ± "), "{text}");
}

#[test]
fn json_can_go_to_stdout_and_ignored_classes_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path());
    let reference = dir.path().join("truth.tif");
    write_raster(
        &reference,
        (X0, Y0),
        RES,
        (N, N),
        &reference_values(),
        Some(&laea()),
        false,
    );
    let o = TOOL.run(&[
        "--map",
        s(&map),
        "--reference",
        s(&reference),
        "--json",
        "-",
        "--ignore",
        "2",
        "--classes",
        "0=Fichte,1=Kiefer",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    // Beech left out on both sides: 3 pairs (map pine, reference beech) + 17 (beech, beech); the
    // nodata pixels stay counted as nodata. Unmapped beech leaves 50 + 30 mapped pixels.
    assert_eq!(j["confusion_matrix"], serde_json::json!([[45, 0], [5, 27]]));
    assert_eq!(j["dropped"]["ignored"], 20);
    assert_eq!(j["classes"][0]["name"], "Fichte");
    assert_eq!(j["area_adjusted"]["mapped_pixels_total"], 80);
}

#[test]
fn tiles_of_reference_are_combined() {
    let dir = tempfile::tempdir().unwrap();
    let map = write_map(dir.path());
    let all = reference_values();
    // Top and bottom halves as two rasters, the bottom one extending beyond the map.
    let top = dir.path().join("top.tif");
    write_raster(&top, (X0, Y0), RES, (N, 5), &all[..5 * N], Some(&laea()), false);
    let mut bottom_values = all[5 * N..].to_vec();
    bottom_values.extend(vec![0u8; 3 * N]);
    let bottom = dir.path().join("bottom.tif");
    write_raster(
        &bottom,
        (X0, Y0 - 5.0 * RES),
        RES,
        (N, 8),
        &bottom_values,
        Some(&laea()),
        false,
    );
    // A third tile beside the map (a truth tile that --clip left out of the mosaic) is skipped.
    let beside = dir.path().join("beside.tif");
    write_raster(
        &beside,
        (X0 + N as f64 * RES, Y0),
        RES,
        (N, N),
        &[1; N * N],
        Some(&laea()),
        false,
    );
    let out = dir.path().join("r");
    let o = TOOL.run(&[
        "--map",
        s(&map),
        "--reference",
        s(&top),
        "--reference",
        s(&bottom),
        "--reference",
        s(&beside),
        "--out-dir",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("beside.tif does not overlap the map: skipped"),
        "{}",
        stderr(&o)
    );
    let j = read_json(&out.join("accuracy.json"));
    assert_eq!(
        j["confusion_matrix"],
        serde_json::json!([[45, 0, 0], [5, 27, 0], [0, 3, 17]])
    );
    // Only tiles beside the map: an error.
    let nowhere = dir.path().join("nowhere");
    let o = TOOL.run(&[
        "--map",
        s(&map),
        "--reference",
        s(&beside),
        "--reference",
        s(&beside),
        "--out-dir",
        s(&nowhere),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("beside.tif (nor any other) does not overlap --map"),
        "{}",
        stderr(&o)
    );
    assert!(!nowhere.join("accuracy.json").exists());
    // The same raster twice overlaps itself.
    let o = TOOL.run(&[
        "--map",
        s(&map),
        "--reference",
        s(&top),
        "--reference",
        s(&top),
        "--out-dir",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("overlap: give non-overlapping tiles"),
        "{}",
        stderr(&o)
    );
}

fn assert_fails(args: &[&str], code: i32, needle: &str, out: &Path) {
    let o = TOOL.run(args);
    assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    if code == 1 {
        assert_eq!(
            e.lines().filter(|l| l.starts_with("assess: error:")).count(),
            1,
            "{e}"
        );
    }
    assert!(!out.join("accuracy.json").exists() && !out.join("accuracy.md").exists());
}

#[test]
fn bad_inputs_are_refused_by_message_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let map = write_map(d);
    let out = d.join("out");
    let pts = d.join("p.gpkg");
    write_points(&pts, Some(&wgs84()), &[(lonlat(1.0, 1.0), Some("0"))]);

    // Missing field.
    assert_fails(
        &[
            "--map",
            s(&map),
            "--reference",
            s(&pts),
            "--field",
            "species",
            "--out-dir",
            s(&out),
        ],
        1,
        "has no field 'species': its fields are class",
        &out,
    );
    // Points without CRS.
    let nocrs = d.join("nocrs.gpkg");
    write_points(&nocrs, None, &[((X0 + 5.0, Y0 - 5.0), Some("0"))]);
    assert_fails(
        &["--map", s(&map), "--reference", s(&nocrs), "--out-dir", s(&out)],
        1,
        "has no coordinate reference system: assign one",
        &out,
    );
    // A class that is neither a code nor a name.
    let bad = d.join("bad.gpkg");
    write_points(&bad, Some(&wgs84()), &[(lonlat(1.0, 1.0), Some("oak"))]);
    assert_fails(
        &["--map", s(&map), "--reference", s(&bad), "--out-dir", s(&out)],
        1,
        "'oak' in field 'class' is neither a class code",
        &out,
    );
    // Points that all miss the map.
    let away = d.join("away.gpkg");
    write_points(&away, Some(&wgs84()), &[(lonlat(-50.0, -50.0), Some("0"))]);
    assert_fails(
        &["--map", s(&map), "--reference", s(&away), "--out-dir", s(&out)],
        1,
        "(1 outside the map, 0 on map nodata",
        &out,
    );
    // Mismatched grid: 20 m pixels.
    let coarse = d.join("coarse.tif");
    write_raster(&coarse, (X0, Y0), 20.0, (5, 5), &[0; 25], Some(&laea()), false);
    assert_fails(
        &["--map", s(&map), "--reference", s(&coarse), "--out-dir", s(&out)],
        1,
        "is not on the map's grid (pixel size 20 x 20 vs the map's 10 x 10): resample it onto the map's grid first: gdalwarp -t_srs EPSG:3035 -te 4321000 3209900 4321100 3210000 -tr 10 10 -r near",
        &out,
    );
    // Aligned but far away.
    let far = d.join("far.tif");
    write_raster(
        &far,
        (X0 + 1000.0, Y0),
        RES,
        (N, N),
        &[0; 100],
        Some(&laea()),
        false,
    );
    assert_fails(
        &["--map", s(&map), "--reference", s(&far), "--out-dir", s(&out)],
        1,
        "does not overlap --map",
        &out,
    );
    // A map without CRS, a missing map, a non-Byte map.
    let nomap = d.join("nocrs.tif");
    write_raster(&nomap, (X0, Y0), RES, (N, N), &map_values(), None, true);
    assert_fails(
        &["--map", s(&nomap), "--reference", s(&pts), "--out-dir", s(&out)],
        1,
        "has no coordinate reference system",
        &out,
    );
    assert_fails(
        &[
            "--map",
            s(&d.join("none.tif")),
            "--reference",
            s(&pts),
            "--out-dir",
            s(&out),
        ],
        1,
        "(no such file)",
        &out,
    );
    // A reference GDAL cannot open: GDAL's own reason, not the gdal crate's wrapper.
    let junk = d.join("junk.gpkg");
    std::fs::write(&junk, b"not a vector").unwrap();
    let o = TOOL.run(&["--map", s(&map), "--reference", s(&junk), "--out-dir", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("cannot open --reference {} (", junk.display()))
            && e.contains("): give a point vector")
            && !e.contains("NULL pointer"),
        "{e}"
    );
    // Two layers: choose one; a layer that is not there.
    let two = d.join("two.gpkg");
    write_points(&two, Some(&wgs84()), &[(lonlat(1.0, 1.0), Some("0"))]);
    add_layer(&two, "more");
    assert_fails(
        &["--map", s(&map), "--reference", s(&two), "--out-dir", s(&out)],
        1,
        "two.gpkg has 2 layers (samples, more): choose one with --layer",
        &out,
    );
    assert_fails(
        &[
            "--map",
            s(&map),
            "--reference",
            s(&two),
            "--layer",
            "plots",
            "--out-dir",
            s(&out),
        ],
        1,
        "two.gpkg has no layer named 'plots': its layers are samples, more",
        &out,
    );
    // Usage errors: no output, mixing --out-dir and --json.
    assert_fails(&["--map", s(&map), "--reference", s(&pts)], 2, "--out-dir", &out);
    assert_fails(
        &[
            "--map",
            s(&map),
            "--reference",
            s(&pts),
            "--out-dir",
            s(&out),
            "--json",
            "x.json",
        ],
        2,
        "cannot be used with",
        &out,
    );
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help*.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}
