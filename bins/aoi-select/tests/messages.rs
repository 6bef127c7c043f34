//! aoi-select's one-line errors for an AOI whose coordinates do not fit the CRS it declares: they
//! name the file and the CRS and say to check it (not PROJ's or OGR's error codes).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("aoi-select", env!("CARGO_BIN_EXE_aoi-select"));

fn cube() -> &'static PathBuf {
    static CUBE: OnceLock<PathBuf> = OnceLock::new();
    CUBE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aoi-select-messages-synth");
        let cfg = SynthConfig {
            out: out.clone(),
            tiles: 1,
            tile_pixels: 30,
            dates: 1,
            force: true,
            ..SynthConfig::default()
        };
        treesits_testkit::generate(&cfg).unwrap();
        out.join("cube")
    })
}

/// A GeoJSON square; `crs`: the EPSG code it declares (none: GeoJSON's lon/lat).
fn square(path: &Path, crs: Option<u32>, x0: f64, y0: f64, x1: f64, y1: f64) {
    let crs = crs.map_or(String::new(), |c| {
        format!(r#""crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::{c}"}}}},"#)
    });
    let text = format!(
        r#"{{"type":"FeatureCollection",{crs}
"features":[{{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon",
"coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}]}}"#
    );
    std::fs::write(path, text).unwrap();
}

fn error_line(aoi: &Path, out: &Path) -> String {
    let o = TOOL.run(&[
        "--cube",
        s(cube()),
        "--aoi",
        s(aoi),
        "--out-dir",
        s(out),
        "--quiet",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "nothing written");
    err.trim_end().to_string()
}

#[test]
fn metres_in_a_lon_lat_file_are_named_as_not_fitting_its_crs() {
    let work = tempfile::tempdir().unwrap();
    let aoi = work.path().join("metres.geojson");
    // LAEA metres in a file that declares (by GeoJSON's default) WGS 84 degrees.
    square(&aoi, None, 4_300_000.0, 3_000_000.0, 4_301_000.0, 3_001_000.0);
    assert_eq!(
        error_line(&aoi, &work.path().join("out")),
        format!(
            "aoi-select: error: feature 0 of --aoi {} has coordinates that do not fit its CRS WGS 84 \
             (EPSG:4326) (they cannot be reprojected onto the cube's): check the CRS the file declares \
             (its .prj, or assign the right one with ogr2ogr -a_srs EPSG:…)",
            aoi.display()
        )
    );
}

#[test]
fn degrees_in_a_metric_file_are_named_as_not_fitting_its_crs() {
    let work = tempfile::tempdir().unwrap();
    let aoi = work.path().join("degrees.geojson");
    square(&aoi, Some(3035), 10.5, 50.2, 10.6, 50.3);
    assert_eq!(
        error_line(&aoi, &work.path().join("out")),
        format!(
            "aoi-select: error: --aoi {} has coordinates within ±180, ±90 (x 10.5..10.6, y 50.2..50.3), \
             longitude/latitude degrees by the look, but declares the projected CRS ETRS89-extended / LAEA \
             Europe (EPSG:3035) (metres): check the CRS the file declares (its .prj, or assign the right \
             one with ogr2ogr -a_srs EPSG:4326)",
            aoi.display()
        )
    );
}

#[test]
fn coordinates_beyond_the_earth_are_named_as_not_fitting_its_crs() {
    let work = tempfile::tempdir().unwrap();
    let aoi = work.path().join("huge.geojson");
    square(&aoi, Some(3035), 1e9, 1e9, 1e9 + 1000.0, 1e9 + 1000.0);
    assert_eq!(
        error_line(&aoi, &work.path().join("out")),
        format!(
            "aoi-select: error: --aoi {} has coordinates beyond any place on Earth in its CRS \
             ETRS89-extended / LAEA Europe (EPSG:3035) (x 1000000000..1000001000, y 1000000000..1000001000): \
             check the CRS the file declares (its .prj, or assign the right one with ogr2ogr -a_srs EPSG:…) \
             and its coordinates",
            aoi.display()
        )
    );
}
