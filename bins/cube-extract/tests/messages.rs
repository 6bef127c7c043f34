//! cube-extract's one-line error for a `--mask` on the wrong grid: it says which tile's grid the mask
//! is on, which it should be on, and what to do, rather than listing two geotransforms.

use std::path::Path;

use gdal::raster::Buffer;
use gdal::Dataset;
use treesits_core::grid::PrjForm;
use treesits_core::{Sensor, TileId};
use treesits_gdal::ForceLayout;
use treesits_gdal::{GeoTiffSpec, TiffLayout};
use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-extract", env!("CARGO_BIN_EXE_cube-extract"));
const SIZE: usize = 30;

/// A mask of ones with the geotransform of tile `like`'s first file, its x origin moved by `shift_x`.
fn write_mask(like: &Path, path: &Path, shift_x: f64) {
    let first = std::fs::read_dir(like).unwrap().next().unwrap().unwrap().path();
    let ds = Dataset::open(first).unwrap();
    let mut g = ds.geo_transform().unwrap();
    g[0] += shift_x;
    let spec = GeoTiffSpec {
        cols: SIZE,
        rows: SIZE,
        bands: 1,
        layout: TiffLayout::Strips { rows: 16 },
        geotransform: g,
        projection_wkt: &ds.projection(),
    };
    let out = spec.create::<u8>(path).unwrap();
    out.rasterband(1)
        .unwrap()
        .write(
            (0, 0),
            (SIZE, SIZE),
            &mut Buffer::new((SIZE, SIZE), vec![1u8; SIZE * SIZE]),
        )
        .unwrap();
}

fn error_line(args: &[&str], out: &Path) -> String {
    let r = TOOL.run(args);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.join("chunks").exists() || std::fs::read_dir(out).unwrap().next().is_none());
    err.trim_end().to_string()
}

#[test]
fn a_mask_of_another_tile_or_off_the_grid_says_which_grid_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 5,
        tiles: 2,
        tile_pixels: SIZE,
        dates: 1,
        year: 2021,
        sensors: vec![Sensor::Sen2a],
        layout: ForceLayout::Force38,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let cube = dir.path().join("synth/cube");
    let (a, b): (TileId, TileId) = (m.tiles[0].tile_id, m.tiles[1].tile_id);
    let out = dir.path().join("chunks");

    let mask = dir.path().join("b.mask.tif");
    write_mask(&cube.join(b.to_string()), &mask, 0.0);
    let tile_a = cube.join(a.to_string());
    let args = ["--tile", s(&tile_a), "--mask", s(&mask), "--out-dir", s(&out)];
    assert_eq!(
        error_line(&args, &out),
        format!(
            "cube-extract: error: {}: the mask is on tile {b}'s grid, not tile {a}'s: give tile {a}'s mask \
             (aoi-select writes one per tile), or make it with aoi-select for this cube",
            mask.display()
        )
    );

    // Half a pixel off: on no tile of the cube; the fix names the tile's extent and pixel size.
    write_mask(&tile_a, &mask, 5.0);
    let gt = {
        let first = std::fs::read_dir(&tile_a)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        Dataset::open(first).unwrap().geo_transform().unwrap()
    };
    let (x0, y1) = (gt[0], gt[3]);
    let (x1, y0) = (x0 + 300.0, y1 - 300.0);
    assert_eq!(
        error_line(&args, &out),
        format!(
            "cube-extract: error: {}: the mask's geotransform (origin {}, {y1}, pixels 10 x 10) is not on \
             tile {a}'s grid (origin {x0}, {y1}, pixels 10 x 10): make the mask with aoi-select for this \
             cube, or warp it onto the tile with gdalwarp -te {x0} {y0} {x1} {y1} -tr 10 10 -r near",
            mask.display(),
            x0 + 5.0
        )
    );
}
