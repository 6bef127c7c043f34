//! cube-inventory's one-line errors for a `--cube` that is not a FORCE cube's root: they name the
//! argument and say what to give instead (not GDAL's words).

use treesits_core::grid::PrjForm;
use treesits_core::Sensor;
use treesits_gdal::ForceLayout;
use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-inventory", env!("CARGO_BIN_EXE_cube-inventory"));

const FIX: &str = "give the FORCE cube's root (the folder holding datacube-definition.prj and the \
                   X0058_Y0056-like tile folders)";

fn one_line_error(args: &[&str]) -> String {
    let out = TOOL.run(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end().to_string()
}

#[test]
fn a_missing_cube_directory_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cube = dir.path().join("no-such-cube");
    let want = format!(
        "cube-inventory: error: --cube {}: no such directory, or not readable with the current \
         credentials: {FIX}",
        cube.display()
    );
    assert_eq!(one_line_error(&["scan", "--cube", s(&cube)]), want);
    // With tiles named, the missing cube is still what is reported, not a tile folder.
    assert_eq!(
        one_line_error(&["scan", "--cube", s(&cube), "--tile", "X0058_Y0056"]),
        want
    );
}

#[test]
fn a_tile_folder_given_as_the_cube_says_to_give_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 3,
        tiles: 1,
        tile_pixels: 20,
        dates: 1,
        year: 2021,
        sensors: vec![Sensor::Sen2a],
        layout: ForceLayout::Force38,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let tile_dir = dir.path().join("synth/cube").join(m.tiles[0].tile_id.to_string());
    assert!(tile_dir.is_dir());
    assert_eq!(
        one_line_error(&["scan", "--cube", s(&tile_dir)]),
        format!(
            "cube-inventory: error: --cube {}: no tile folders (X0058_Y0056-like) in it: give the FORCE \
             cube's root (the folder holding datacube-definition.prj and the tile folders), or name tiles \
             with --tile",
            tile_dir.display()
        )
    );
}

#[test]
fn a_missing_s3_prefix_or_bucket_is_named_with_the_fix() {
    let moto = treesits_testkit::moto::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("datacube-definition.prj"), "x").unwrap();
    moto.upload_dir(dir.path(), "cube", "germany");
    let env = moto.gdal_env();
    for cube in ["s3://cube/austria", "s3://no-such-bucket/germany"] {
        let r = TOOL
            .command()
            .args(["scan", "--cube", cube])
            .envs(env.clone())
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
        assert_eq!(
            stderr(&r).trim_end(),
            format!(
                "cube-inventory: error: --cube {cube}: no such directory, or not readable with the \
                 current credentials: {FIX}"
            )
        );
    }
}
