//! `mosaic`'s quicklook read back with GDAL: an RGBA PNG whose nodata is transparent, whose map shows
//! the mosaic's classes in their colours, with a title band, a legend of every class and a scale bar.

use std::path::Path;

use gdal::{Dataset, Metadata};
use treesits_core::species::{tree_species, CLASS_NODATA};
use treesits_testkit::cli::{s, Tool};
use treesits_testkit::predictions::{tile_predictions, PredictionSpec};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("mosaic", env!("CARGO_BIN_EXE_mosaic"));
const INK: [u8; 4] = [33, 33, 33, 255];

fn bands(path: &Path, n: usize) -> (Vec<Vec<u8>>, usize, usize) {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (w, h) = ds.raster_size();
    assert_eq!(ds.raster_count(), n, "{}", path.display());
    let v = (1..=n)
        .map(|b| {
            ds.rasterband(b)
                .unwrap()
                .read_as::<u8>((0, 0), (w, h), (w, h), None)
                .unwrap()
                .into_shape_and_vec()
                .1
        })
        .collect();
    (v, w, h)
}

#[test]
fn the_quicklook_is_rgba_with_transparent_nodata_a_title_a_legend_and_a_scale_bar() {
    // Three 64 px tiles on a 2 × 2 layout: the fourth quadrant of the 128 px mosaic is nodata.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 11,
        tiles: 3,
        tile_pixels: 64,
        dates: 1,
        ..Default::default()
    };
    let spec = PredictionSpec {
        chunk_rows: 32,
        ..Default::default()
    };
    let chunks = dir.path().join("chunks");
    for t in cfg.tile_ids() {
        tile_predictions(&cfg, t, &spec)
            .write_chunk_files(&chunks)
            .unwrap();
    }
    let out = dir.path().join("maps");
    let run = TOOL.run(&[
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--quicklook-size",
        "256",
        "-q",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let png = out.join("quicklook.png");
    let ds = Dataset::open(&png).unwrap();
    assert_eq!(ds.driver().short_name(), "PNG");
    assert_eq!(
        ds.rasterband(4).unwrap().color_interpretation(),
        gdal::raster::ColorInterpretation::AlphaBand
    );
    // The words it shows, also as the PNG's text chunks.
    assert_eq!(
        ds.metadata_item("Title", "").as_deref(),
        Some("Tree species, model synthetic-truth")
    );
    assert_eq!(
        ds.metadata_item("Description", "").as_deref(),
        Some(
            format!(
                "acquisitions {0}-01-01 to {0}-12-31 \u{b7} ETRS89-extended / LAEA Europe (EPSG:3035)",
                cfg.year
            )
            .as_str()
        )
    );
    // 10 m pixels shown at 5 m a quicklook pixel, 256 px wide: a third is 427 m → a 200 m bar, 40 px.
    assert_eq!(
        ds.metadata_item("Comment", "").as_deref(),
        Some("scale bar 200 m")
    );

    let (b, w, h) = bands(&png, 4);
    let at = |x: usize, y: usize| [b[0][y * w + x], b[1][y * w + x], b[2][y * w + x], b[3][y * w + x]];
    // The background is opaque, so it differs from the transparent nodata.
    assert_eq!(at(0, 0)[3], 255);
    assert_eq!(at(w - 1, h - 1)[3], 255);

    let (m, mw, mh) = bands(&out.join("mosaic_class.tif"), 1);
    assert_eq!((mw, mh), (128, 128));
    let classes = tree_species();
    let colour = |v: u8| {
        if v == CLASS_NODATA {
            [0, 0, 0, 0]
        } else {
            let c = classes[usize::from(v)].colour;
            [c[0], c[1], c[2], 255]
        }
    };
    // The 128 px mosaic is enlarged twice: map pixel (x, y) shows mosaic pixel (x / 2, y / 2). Find
    // where the map sits by its content, then compare every pixel.
    let expected = |x: usize, y: usize| colour(m[0][(y / 2) * mw + x / 2]);
    let fits = |ox: usize, oy: usize| {
        ox + 256 <= w
            && oy + 256 <= h
            && (0..256)
                .step_by(7)
                .all(|y| (0..256).step_by(5).all(|x| at(ox + x, oy + y) == expected(x, y)))
    };
    let (ox, oy) = (0..h.min(200))
        .flat_map(|oy| (0..64).map(move |ox| (ox, oy)))
        .find(|&(ox, oy)| fits(ox, oy))
        .expect("the map is in the quicklook");
    let mut nodata = 0;
    for y in 0..256 {
        for x in 0..256 {
            let e = expected(x, y);
            assert_eq!(at(ox + x, oy + y), e, "map pixel ({x}, {y})");
            nodata += usize::from(e[3] == 0);
        }
    }
    assert!(nodata >= 128 * 128, "{nodata}");
    let quadrant = (128..256).flat_map(|y| (128..256).map(move |x| (x, y)));
    assert!(
        quadrant
            .into_iter()
            .all(|(x, y)| at(ox + x, oy + y) == [0, 0, 0, 0]),
        "the missing tile's quadrant is transparent"
    );

    // The title band above the map holds text.
    let title_ink = (0..oy)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| at(x, y) == INK)
        .count();
    assert!(title_ink > 300, "title band ink pixels: {title_ink}");
    // Every class colour is in the legend, right of the map, as an opaque swatch.
    for c in &classes {
        let rgba = [c.colour[0], c.colour[1], c.colour[2], 255];
        let found = (oy..h).any(|y| (ox + 256 + 1..w).any(|x| at(x, y) == rgba));
        assert!(found, "legend swatch of {} missing", c.name);
    }
    // The scale bar under the map: its dark half 20 px from the map's left edge.
    let bar_row = (oy + 256..h)
        .find(|&y| (ox..ox + 20).all(|x| at(x, y) == INK))
        .expect("a scale bar under the map");
    let dark = (ox..w).take_while(|&x| at(x, bar_row + 2) == INK).count();
    assert_eq!(dark, 20, "dark half of the 40 px bar");
}
