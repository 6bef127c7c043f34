//! `aoi-select` run as a program on a synthetic cube, its outputs checked pixel by pixel against an
//! independent point-in-polygon computation (GEOS via `Geometry::contains`, not the rasteriser).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::OnceLock;

use gdal::vector::{Geometry, OGRwkbGeometryType};
use gdal::{Dataset, Metadata};
use treesits_core::grid::{PrjForm, TileGrid, TileId};
use treesits_core::species::NON_FOREST;
use treesits_core::tiles_csv::{parse_tiles_csv, TileListRow};
use treesits_testkit::cli::{assert_snapshot, file_names, stderr, Tool};
use treesits_testkit::disk;
use treesits_testkit::{Manifest, SynthConfig};

const TOOL: Tool = Tool::new("aoi-select", env!("CARGO_BIN_EXE_aoi-select"));

/// 2 × 2 tiles of 120 × 120 px at 10 m, one date: generated once per test run.
fn synth() -> &'static (PathBuf, Manifest) {
    static SYNTH: OnceLock<(PathBuf, Manifest)> = OnceLock::new();
    SYNTH.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aoi-select-synth");
        let cfg = SynthConfig {
            out: out.clone(),
            tiles: 4,
            tile_pixels: 120,
            dates: 1,
            force: true,
            ..SynthConfig::default()
        };
        let m = treesits_testkit::generate(&cfg).unwrap();
        (out, m)
    })
}

fn grid(m: &Manifest) -> TileGrid {
    m.cube_definition.grid(m.resolution).unwrap()
}

/// Runs against the synthetic cube, writing into `out`; panics with stderr when it fails.
fn select(out: &Path, extra: &[&str]) -> Vec<TileListRow> {
    let (dir, _) = synth();
    let cube = dir.join("cube");
    let mut args = vec![
        "--cube",
        cube.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let o = TOOL.run(&args);
    assert!(
        o.status.success(),
        "aoi-select {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty(), "stdout carries no logs");
    parse_tiles_csv(&std::fs::read_to_string(out.join("tiles.csv")).unwrap()).unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The masks a run wrote, by tile.
fn read_masks(out: &Path, rows: &[TileListRow], g: &TileGrid) -> BTreeMap<TileId, Vec<u8>> {
    let (cols, nrows) = g.tile_pixels;
    rows.iter()
        .map(|r| {
            let ds = Dataset::open(out.join(&r.mask)).unwrap();
            assert_eq!(ds.raster_size(), g.tile_pixels);
            assert_eq!(ds.geo_transform().unwrap(), g.geotransform(r.tile_id));
            let band = ds.rasterband(1).unwrap();
            assert_eq!(band.band_type(), gdal::raster::GdalDataType::UInt8);
            assert_eq!(band.block_size(), (cols, g.block_rows));
            assert_eq!(
                ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
                Some("LZW")
            );
            let v = band
                .read_as::<u8>((0, 0), (cols, nrows), (cols, nrows), None)
                .unwrap()
                .into_shape_and_vec()
                .1;
            assert!(v.iter().all(|&p| p <= 1), "mask values are 0 or 1");
            assert_eq!(
                v.iter().filter(|&&p| p == 1).count() as u64,
                r.pixels,
                "pixels column of {}",
                r.tile_id
            );
            (r.tile_id, v)
        })
        .collect()
}

/// Brute force: every pixel centre of every tile around the cube tested against the polygons.
/// Only tiles with at least one selected pixel are returned, as the tool lists them.
fn brute_force(m: &Manifest, wkts: &[&str]) -> BTreeMap<TileId, Vec<u8>> {
    let g = grid(m);
    let polys: Vec<Geometry> = wkts.iter().map(|w| Geometry::from_wkt(w).unwrap()).collect();
    let (xs, ys): (Vec<i32>, Vec<i32>) = m.tiles.iter().map(|t| (t.tile_id.x, t.tile_id.y)).unzip();
    let (cols, rows) = g.tile_pixels;
    let mut pt = Geometry::empty(OGRwkbGeometryType::wkbPoint).unwrap();
    pt.add_point_2d((0.0, 0.0));
    let mut out = BTreeMap::new();
    for ty in ys.iter().min().unwrap() - 1..=ys.iter().max().unwrap() + 1 {
        for tx in xs.iter().min().unwrap() - 1..=xs.iter().max().unwrap() + 1 {
            let tile = TileId::new(tx, ty);
            let mut mask = vec![0u8; cols * rows];
            for r in 0..rows {
                for c in 0..cols {
                    pt.set_point_2d(0, g.pixel_centre(tile, r, c));
                    if polys.iter().any(|p| p.contains(&pt)) {
                        mask[r * cols + c] = 1;
                    }
                }
            }
            if mask.contains(&1) {
                out.insert(tile, mask);
            }
        }
    }
    out
}

fn all_wkts(m: &Manifest) -> Vec<&str> {
    m.aoi.features.iter().map(|f| f.wkt_laea.as_str()).collect()
}

#[test]
fn tiles_and_masks_equal_a_brute_force_point_in_polygon_test() {
    let (dir, m) = synth();
    let out = tempfile::tempdir().unwrap();
    let rows = select(out.path(), &["--aoi", path_str(&dir.join("aoi_laea.gpkg"))]);
    let got = read_masks(out.path(), &rows, &grid(m));
    let want = brute_force(m, &all_wkts(m));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "tile list"
    );
    assert_eq!(want.len(), 4, "the synthetic AOI reaches all four tiles");
    for (tile, mask) in &want {
        let differing = mask.iter().zip(&got[tile]).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "pixels of {tile} differing from brute force");
    }
    // The rows carry the tile's own extent and mask name.
    for r in &rows {
        assert_eq!(r.extent, m.cube_definition.tile_extent(r.tile_id));
        assert_eq!(r.mask, format!("{}.mask.tif", r.tile_id));
    }
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        5,
        "tiles.csv and four masks, nothing else: {names:?}"
    );
}

#[test]
fn aoi_in_epsg4326_and_epsg3035_give_the_same_masks() {
    let (dir, m) = synth();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rows_geo = select(a.path(), &["--aoi", path_str(&dir.join("aoi.gpkg"))]);
    let rows_laea = select(b.path(), &["--aoi", path_str(&dir.join("aoi_laea.gpkg"))]);
    assert_eq!(rows_geo, rows_laea);
    assert_eq!(
        read_masks(a.path(), &rows_geo, &grid(m)),
        read_masks(b.path(), &rows_laea, &grid(m))
    );
}

#[test]
fn where_selects_one_feature_and_a_rerun_replaces_the_old_masks() {
    let (dir, m) = synth();
    let out = tempfile::tempdir().unwrap();
    let aoi = dir.join("aoi_laea.gpkg");
    let all = select(out.path(), &["--aoi", path_str(&aoi)]);
    assert_eq!(all.len(), 4);
    let rows = select(
        out.path(),
        &["--aoi", path_str(&aoi), "--where", "name = 'Auwald'"],
    );
    let auwald = m.aoi.features.iter().find(|f| f.name == "Auwald").unwrap();
    let want = brute_force(m, &[auwald.wkt_laea.as_str()]);
    assert!(
        want.len() < 4,
        "the triangle lies in fewer tiles than the whole AOI"
    );
    let got = read_masks(out.path(), &rows, &grid(m));
    assert_eq!(got, want);
    let masks_on_disk = std::fs::read_dir(out.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".mask.tif")
        })
        .count();
    assert_eq!(masks_on_disk, want.len(), "masks of the earlier run are gone");
}

#[test]
fn multipolygon_parts_and_the_hole_are_honoured() {
    let (dir, m) = synth();
    let g = grid(m);
    let aoi = dir.join("aoi_laea.gpkg");
    for name in ["Nordwald", "Suedforst"] {
        let out = tempfile::tempdir().unwrap();
        let filter = format!("name = '{name}'");
        let rows = select(out.path(), &["--aoi", path_str(&aoi), "--where", &filter]);
        let got = read_masks(out.path(), &rows, &g);
        let f = m.aoi.features.iter().find(|f| f.name == name).unwrap();
        let geom = Geometry::from_wkt(&f.wkt_laea).unwrap();
        let probe = |x: f64, y: f64| -> u8 {
            let (tile, r, c) = g.pixel_of(x, y);
            got.get(&tile).map_or(0, |mask| mask[r * g.tile_pixels.0 + c])
        };
        let centre = |e: gdal::vector::Envelope| ((e.MinX + e.MaxX) / 2.0, (e.MinY + e.MaxY) / 2.0);
        if name == "Nordwald" {
            // Inside the hole: 0; between the hole and the outer ring: 1.
            let hole = geom.get_geometry(1).envelope();
            let (hx, hy) = centre(hole);
            assert_eq!(probe(hx, hy), 0, "the hole is not selected");
            assert_eq!(probe(hole.MinX - 25.0, hy), 1, "west of the hole is selected");
            let outer = geom.get_geometry(0).envelope();
            let ring_px = ((outer.MaxX - outer.MinX) * (outer.MaxY - outer.MinY)
                - (hole.MaxX - hole.MinX) * (hole.MaxY - hole.MinY))
                / (g.resolution * g.resolution);
            let total: u64 = rows.iter().map(|r| r.pixels).sum();
            assert_eq!(total, ring_px.round() as u64, "pixel-aligned ring minus hole");
        } else {
            // Both parts of the multipolygon are selected.
            assert_eq!(geom.geometry_count(), 2);
            for i in 0..2 {
                let (x, y) = centre(geom.get_geometry(i).envelope());
                assert_eq!(probe(x, y), 1, "part {i} of the multipolygon");
            }
        }
        assert_eq!(got, brute_force(m, &[f.wkt_laea.as_str()]), "{name}");
    }
}

/// Writes a GeoJSON polygon in EPSG:3035.
fn geojson_square(path: &Path, x0: f64, y0: f64, x1: f64, y1: f64) {
    let text = format!(
        r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::3035"}}}},
"features":[{{"type":"Feature","properties":{{"name":"square"}},"geometry":{{"type":"Polygon",
"coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}]}}"#
    );
    std::fs::write(path, text).unwrap();
}

#[test]
fn squares_give_exact_pixel_counts_by_centre_and_all_touched_rules() {
    let (_, m) = synth();
    let g = grid(m);
    let tile = m.tiles[0].tile_id;
    let [x0, _, _, y0, _, _] = g.geotransform(tile);
    let work = tempfile::tempdir().unwrap();
    // On pixel edges: 37 × 23 pixels whatever the rule.
    let aligned = work.path().join("aligned.geojson");
    geojson_square(&aligned, x0 + 100.0, y0 - 330.0, x0 + 470.0, y0 - 100.0);
    // Off the edges by 2 m: 37 × 23 centres inside, 38 × 24 pixels touched.
    let shifted = work.path().join("shifted.geojson");
    geojson_square(&shifted, x0 + 102.0, y0 - 332.0, x0 + 472.0, y0 - 102.0);
    for (aoi, touched, want) in [
        (&aligned, false, 37 * 23),
        (&aligned, true, 37 * 23),
        (&shifted, false, 37 * 23),
        (&shifted, true, 38 * 24),
    ] {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec!["--aoi", path_str(aoi)];
        if touched {
            args.push("--all-touched");
        }
        let rows = select(out.path(), &args);
        assert_eq!(rows.len(), 1, "{aoi:?} all_touched={touched}");
        assert_eq!(rows[0].tile_id, tile);
        assert_eq!(rows[0].pixels, want, "{aoi:?} all_touched={touched}");
        let mask = &read_masks(out.path(), &rows, &g)[&tile];
        let cols = g.tile_pixels.0;
        assert_eq!(mask[10 * cols + 10], 1, "the north-west corner pixel");
        assert_eq!(mask[9 * cols + 9], 0, "the pixel north-west of the corner");
    }
}

#[test]
fn existing_only_keeps_tiles_with_directories() {
    let (_, m) = synth();
    let g = grid(m);
    // Across the west edge of the cube: half in the cube's westernmost tile, half in the one beyond.
    let west = m
        .tiles
        .iter()
        .map(|t| t.tile_id)
        .min_by_key(|t| (t.x, t.y))
        .unwrap();
    let [x0, _, _, y0, _, _] = g.geotransform(west);
    let work = tempfile::tempdir().unwrap();
    let aoi = work.path().join("edge.geojson");
    geojson_square(&aoi, x0 - 200.0, y0 - 300.0, x0 + 300.0, y0 - 100.0);
    let out = tempfile::tempdir().unwrap();
    let rows = select(out.path(), &["--aoi", path_str(&aoi)]);
    let ids: Vec<TileId> = rows.iter().map(|r| r.tile_id).collect();
    assert_eq!(ids, vec![TileId::new(west.x - 1, west.y), west]);
    assert_eq!(rows[0].pixels, 20 * 20);
    assert_eq!(rows[1].pixels, 30 * 20);
    let out = tempfile::tempdir().unwrap();
    let rows = select(out.path(), &["--aoi", path_str(&aoi), "--existing-only"]);
    assert_eq!(rows.iter().map(|r| r.tile_id).collect::<Vec<_>>(), vec![west]);
}

#[test]
fn both_prj_forms_give_the_same_selection() {
    let (dir, m) = synth();
    let work = tempfile::tempdir().unwrap();
    // A cube root in the old seven-line form, with the same tile directories (empty: only names count).
    let old = work.path().join("cube-old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(
        old.join("datacube-definition.prj"),
        m.cube_definition.to_prj(PrjForm::Lines),
    )
    .unwrap();
    for t in &m.tiles {
        std::fs::create_dir(old.join(t.tile_id.to_string())).unwrap();
    }
    let aoi = dir.join("aoi.gpkg");
    let a = work.path().join("a");
    let new_rows = select(&a, &["--aoi", path_str(&aoi)]);
    let b = work.path().join("b");
    let o = TOOL.run(&[
        "--cube",
        path_str(&old),
        "--aoi",
        path_str(&aoi),
        "--out-dir",
        path_str(&b),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(b.join("tiles.csv")).unwrap(),
        std::fs::read_to_string(a.join("tiles.csv")).unwrap()
    );
    assert_eq!(new_rows.len(), 4);
}

#[test]
fn worldcover_like_mask_keeps_forest_pixels() {
    let (dir, m) = synth();
    let g = grid(m);
    let out = tempfile::tempdir().unwrap();
    let lc1 = dir.join(&m.landcover[0]);
    let lc2 = dir.join(&m.landcover[1]);
    let rows = select(
        out.path(),
        &[
            "--aoi",
            path_str(&dir.join("aoi.gpkg")),
            "--mask",
            path_str(&lc1),
            "--mask",
            path_str(&lc2),
            "--mask-values",
            "10",
        ],
    );
    let got = read_masks(out.path(), &rows, &g);
    let aoi = brute_force(m, &all_wkts(m));
    let (mut selected, mut selected_forest, mut aoi_forest, mut aoi_forest_selected) = (0, 0, 0, 0);
    for t in &m.tiles {
        let Some(inside) = aoi.get(&t.tile_id) else {
            continue;
        };
        let truth_ds = Dataset::open(dir.join(&t.truth)).unwrap();
        let (cols, nrows) = g.tile_pixels;
        let truth = truth_ds
            .rasterband(1)
            .unwrap()
            .read_as::<u8>((0, 0), (cols, nrows), (cols, nrows), None)
            .unwrap()
            .into_shape_and_vec()
            .1;
        let none = vec![0u8; cols * nrows];
        let mask = got.get(&t.tile_id).unwrap_or(&none);
        for i in 0..cols * nrows {
            let forest = truth[i] < NON_FOREST;
            assert!(
                mask[i] <= inside[i],
                "the value mask never adds pixels outside the AOI"
            );
            if mask[i] == 1 {
                selected += 1;
                selected_forest += u64::from(forest);
            }
            if inside[i] == 1 && forest {
                aoi_forest += 1;
                aoi_forest_selected += u64::from(mask[i]);
            }
        }
    }
    let aoi_pixels: usize = aoi.values().map(|m| m.iter().filter(|&&v| v == 1).count()).sum();
    assert!(
        selected > 1000 && selected < aoi_pixels as u64,
        "{selected} of {aoi_pixels}"
    );
    let precision = selected_forest as f64 / selected as f64;
    let recall = aoi_forest_selected as f64 / aoi_forest as f64;
    assert!(
        precision >= 0.97,
        "selected pixels that are forest: {precision:.4}"
    );
    assert!(recall >= 0.97, "forest pixels of the AOI selected: {recall:.4}");
}

/// Runs a failing case: exit 1, one line `aoi-select: error: …` containing `needle`, and the output
/// directory as it was before (absent, or holding only `keep.txt`).
fn assert_fails(args: &[&str], needle: &str) {
    let work = tempfile::tempdir().unwrap();
    for existing in [false, true] {
        let out = work.path().join(if existing { "existing" } else { "absent" });
        if existing {
            std::fs::create_dir(&out).unwrap();
            std::fs::write(out.join("keep.txt"), b"x").unwrap();
        }
        let mut all = args.to_vec();
        all.extend_from_slice(&["--out-dir", path_str(&out), "--quiet"]);
        let o = TOOL.run(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got: {err}");
        assert!(lines[0].starts_with("aoi-select: error: "), "{err}");
        assert!(lines[0].contains(needle), "'{needle}' not in: {err}");
        assert!(o.stdout.is_empty());
        let mut left: Vec<String> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        if existing {
            assert_eq!(left, vec!["existing".to_string()], "no staging directory left");
            let inside: Vec<_> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(inside, vec![std::ffi::OsString::from("keep.txt")], "{args:?}");
        } else {
            assert!(left.is_empty(), "nothing written on failure: {left:?}");
        }
    }
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_no_output() {
    let (dir, m) = synth();
    let cube = dir.join("cube");
    let cube = path_str(&cube);
    let aoi = dir.join("aoi.gpkg");
    let aoi = path_str(&aoi);
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name);

    // AOI outside the cube: 100 km east of it.
    let e = m.tiles.iter().map(|t| t.extent.xmax).fold(f64::MIN, f64::max);
    let y = m.tiles[0].extent.ymax - 500.0;
    geojson_square(&w("far.geojson"), e + 1e5, y - 500.0, e + 1e5 + 500.0, y);
    assert_fails(
        &["--cube", cube, "--aoi", path_str(&w("far.geojson"))],
        "lies outside the cube",
    );

    // An empty layer.
    std::fs::write(
        w("empty.geojson"),
        r#"{"type":"FeatureCollection","features":[]}"#,
    )
    .unwrap();
    assert_fails(
        &["--cube", cube, "--aoi", path_str(&w("empty.geojson"))],
        "has no polygon features",
    );

    // A --where that selects nothing, and one that is not SQL.
    assert_fails(
        &["--cube", cube, "--aoi", aoi, "--where", "name = 'Nirgendwo'"],
        "selects no features",
    );
    assert_fails(
        &["--cube", cube, "--aoi", aoi, "--where", "name = = 'x'"],
        "not a valid OGR SQL attribute filter",
    );

    // A vector that is not one, and one that does not exist.
    std::fs::write(w("broken.gpkg"), b"this is not a GeoPackage").unwrap();
    assert_fails(
        &["--cube", cube, "--aoi", path_str(&w("broken.gpkg"))],
        "cannot open --aoi",
    );
    assert_fails(
        &["--cube", cube, "--aoi", path_str(&w("missing.gpkg"))],
        "cannot open --aoi",
    );
    assert_fails(
        &["--cube", cube, "--aoi", aoi, "--layer", "roads"],
        "has no layer named 'roads'",
    );

    // A mask raster far from the AOI (EPSG:4326, in the Indian Ocean).
    let far_mask = w("far_mask.tif");
    {
        let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = drv.create_with_band_type::<u8, _>(&far_mask, 10, 10, 1).unwrap();
        ds.set_geo_transform(&[80.0, 0.01, 0.0, -10.0, 0.0, -0.01])
            .unwrap();
        ds.set_projection(
            &gdal::spatial_ref::SpatialRef::from_epsg(4326)
                .unwrap()
                .to_wkt()
                .unwrap(),
        )
        .unwrap();
    }
    assert_fails(
        &["--cube", cube, "--aoi", aoi, "--mask", path_str(&far_mask)],
        "does not overlap the AOI",
    );

    // Malformed datacube-definition.prj (FORCE 3.9.02's truncated WKT) and a missing one.
    let bad_cube = w("bad-cube");
    std::fs::create_dir(&bad_cube).unwrap();
    let prj = m.cube_definition.to_prj(PrjForm::Tagged);
    std::fs::write(bad_cube.join("datacube-definition.prj"), &prj[..120]).unwrap();
    assert_fails(&["--cube", path_str(&bad_cube), "--aoi", aoi], "malformed");
    assert_fails(
        &["--cube", path_str(&w("no-cube")), "--aoi", aoi],
        "datacube-definition.prj",
    );
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help*.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}

/// An S3 failure on `--aoi` is reported as what it is, with GDAL's reason, not as an unknown format
/// (GDAL's last-error state was read after the gdal crate had reset it).
#[test]
fn an_s3_aoi_that_fails_to_load_says_why() {
    let (dir, _) = synth();
    let moto = treesits_testkit::moto::Moto::start();
    moto.upload_dir(&dir.join("cube"), "cube", "de");
    let out = tempfile::tempdir().unwrap();
    let env = moto.gdal_env();
    let run = |aoi: &str| {
        TOOL.command()
            .args(["--cube", "s3://cube/de", "--aoi", aoi, "--out-dir"])
            .arg(out.path().join("sel"))
            .envs(env.clone())
            .output()
            .unwrap()
    };
    // A missing object and a missing bucket: GDAL's reason, not "not a vector format".
    for aoi in ["s3://cube/de/no-such-aoi.gpkg", "s3://no-such-bucket/aoi.gpkg"] {
        let r = run(aoi);
        TOOL.fails_with(
            &r,
            &format!(
                "cannot open --aoi {} as a vector (",
                aoi.replace("s3://", "/vsis3/")
            ),
        );
        let err = stderr(&r);
        assert!(!err.contains("not a vector format OGR recognises"), "{err}");
        assert!(!err.contains("NULL pointer"), "{err}");
        assert!(!out.path().join("sel").exists());
    }
    // The same AOI uploaded loads.
    moto.put(&dir.join("aoi.gpkg"), "cube", "de/aoi.gpkg");
    let r = run("s3://cube/de/aoi.gpkg");
    TOOL.ok(&r);
    assert!(out.path().join("sel/tiles.csv").exists());
}

/// A cube whose land-cover masks make noisy (poorly compressing) tile masks: big enough to fill a
/// small disk mid-write. 2 tiles of 400 × 400 px.
fn big_synth() -> &'static (PathBuf, Manifest) {
    static SYNTH: OnceLock<(PathBuf, Manifest)> = OnceLock::new();
    SYNTH.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aoi-select-big-synth");
        let cfg = SynthConfig {
            out: out.clone(),
            tiles: 2,
            tile_pixels: 400,
            dates: 1,
            force: true,
            ..SynthConfig::default()
        };
        let m = treesits_testkit::generate(&cfg).unwrap();
        (out, m)
    })
}

fn big_args<'a>(dir: &'a Path, m: &'a Manifest, out: &'a Path) -> Vec<String> {
    [
        "--cube".to_string(),
        path_str(&dir.join("cube")).into(),
        "--aoi".into(),
        path_str(&dir.join("aoi.gpkg")).into(),
        "--mask".into(),
        path_str(&dir.join(&m.landcover[0])).into(),
        "--mask".into(),
        path_str(&dir.join(&m.landcover[1])).into(),
        "--mask-values".into(),
        "10".into(),
        "--out-dir".into(),
        path_str(out).into(),
        "--quiet".into(),
    ]
    .into()
}

/// A disk that fills during the run and frees again: the mask GDAL failed to write is an error
/// naming it, and the earlier selection stays as it was. (Before: exit 0, unreadable masks.)
#[test]
fn a_disk_that_fills_and_frees_during_the_run_fails_it_and_keeps_the_previous_selection() {
    let Some(d) = disk::Disk::mount("aoi-select disk-full test", 16 << 20) else {
        return;
    };
    let (dir, m) = big_synth();
    let scratch = tempfile::tempdir().unwrap();
    let measure = scratch.path().join("sel");
    TOOL.ok(&TOOL.run(
        &big_args(dir, m, &measure)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let total = disk::bytes(&measure);
    let out = d.dir.join("sel");
    let args = big_args(dir, m, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TOOL.ok(&TOOL.run(&args));
    let before: Vec<(String, Vec<u8>)> = file_names(&out)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(out.join(&n)).unwrap()))
        .collect();

    let watcher = d.fill_then_free(total / 3);
    let o = TOOL.run(&args);
    assert!(watcher.stop(), "the disk never filled: the test proved nothing");
    TOOL.fails_with(&o, ".mask.tif");
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(treesits_testkit::cli::file_names(&d.dir), vec!["sel"]);
    let after: Vec<(String, Vec<u8>)> = file_names(&out)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(out.join(&n)).unwrap()))
        .collect();
    assert!(after == before, "the earlier selection changed");
    for (n, _) in &after {
        if n.ends_with(".tif") {
            let ds = Dataset::open(out.join(n)).unwrap();
            let (w, h) = ds.raster_size();
            ds.rasterband(1)
                .unwrap()
                .read_as::<u8>((0, 0), (w, h), (w, h), None)
                .unwrap();
        }
    }
}

/// Killed in its commit, a rerun into an existing selection leaves none rather than masks without
/// their `tiles.csv`; a run while another holds the selection's lock is refused; the next run
/// cleans up what the killed one left. (Before: masks moved in one by one, no lock.)
#[test]
fn a_killed_or_concurrent_rerun_never_leaves_masks_and_tiles_csv_of_two_runs() {
    let (dir, _) = synth();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("sel");
    let aoi = dir.join("aoi.gpkg");
    let base = |extra: &[&str]| {
        let mut v = vec![
            "--cube".to_string(),
            path_str(&dir.join("cube")).into(),
            "--aoi".into(),
            path_str(&aoi).into(),
            "--out-dir".into(),
            path_str(&out).into(),
            "--quiet".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let all = select(&out, &["--aoi", path_str(&aoi)]);
    let before = file_names(&out);
    let o = TOOL
        .command()
        .args(base(&["--where", "name = 'Auwald'"]))
        .env("TREESITS_TEST_ABORT", "staged-dir-swap")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed in its commit: {}", stderr(&o));
    assert!(!out.exists(), "no selection rather than a mixture");

    let lock = std::fs::File::create(work.path().join(".sel.lock")).unwrap();
    lock.lock().unwrap();
    let o = TOOL.run(&base(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    TOOL.fails_with(&o, "another run is writing");
    assert!(!out.exists());
    drop(lock);

    let again = select(&out, &["--aoi", path_str(&aoi)]);
    assert_eq!(again, all);
    assert_eq!(file_names(&out), before);
    // The lock went with the run that held it last; the killed run's leftovers too.
    assert_eq!(file_names(work.path()), vec!["sel"]);
}
