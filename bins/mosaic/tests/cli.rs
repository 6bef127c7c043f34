//! `mosaic` run as a program on synthetic predictions: exact round trips, COG layout, styling, clip,
//! reprojection, stdin streams, partial tiles and bad inputs.

use std::path::{Path, PathBuf};
use std::process::Output;

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::Geometry;
use gdal::{Dataset, Metadata};
use treesits_core::prediction::{PredictionReader, PROB_NODATA};
use treesits_core::species::{tree_species, CLASS_NODATA};
use treesits_core::{TileGrid, TileId};
use treesits_testkit::cli::{assert_snapshot, s, stderr, Tool};
use treesits_testkit::disk;
use treesits_testkit::predictions::{tile_predictions, PredictionSpec, TilePredictions};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("mosaic", env!("CARGO_BIN_EXE_mosaic"));

struct Set {
    dir: tempfile::TempDir,
    cfg: SynthConfig,
    tiles: Vec<TilePredictions>,
}

impl Set {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn grid(&self) -> TileGrid {
        TileGrid::new(self.cfg.cube_definition(), self.cfg.resolution).unwrap()
    }
    fn chunks(&self) -> PathBuf {
        self.path("chunks")
    }
}

/// Predictions of `tiles` synthetic tiles of `size` pixels, written as chunk files into `chunks/`.
fn set(tiles: usize, size: usize, chunk_rows: usize) -> Set {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 11,
        tiles,
        tile_pixels: size,
        dates: 1,
        ..Default::default()
    };
    let spec = PredictionSpec {
        chunk_rows,
        ..Default::default()
    };
    let tiles: Vec<TilePredictions> = cfg
        .tile_ids()
        .into_iter()
        .map(|t| tile_predictions(&cfg, t, &spec))
        .collect();
    let s = Set { dir, cfg, tiles };
    for t in &s.tiles {
        t.write_chunk_files(&s.chunks()).unwrap();
    }
    s
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "mosaic failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "stdout carries data only");
}

fn read<T: Copy + gdal::raster::GdalType>(path: &Path, band: usize) -> (Vec<T>, usize, usize) {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (w, h) = ds.raster_size();
    let v = ds
        .rasterband(band)
        .unwrap()
        .read_as::<T>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    (v, w, h)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every tile's class and probability rasters equal the predictions, on the FORCE grid exactly.
fn assert_tiles_equal(set: &Set, out: &Path, skip_rows: Option<(TileId, std::ops::Range<usize>)>) {
    let grid = set.grid();
    for t in &set.tiles {
        let class_path = out.join(format!("{}_class.tif", t.tile));
        let ds = Dataset::open(&class_path).unwrap();
        assert_eq!(ds.geo_transform().unwrap(), grid.geotransform(t.tile));
        assert_eq!(ds.geo_transform().unwrap(), t.meta.source.geotransform);
        let srs = ds.spatial_ref().unwrap();
        assert_eq!(srs.auth_code().unwrap(), 3035);
        let (class, w, _) = read::<u8>(&class_path, 1);
        let (prob, _, _) = read::<u16>(&out.join(format!("{}_prob.tif", t.tile)), 1);
        assert_eq!(w, grid.tile_pixels.0);
        for (i, (&c, &p)) in class.iter().zip(&prob).enumerate() {
            let row = i / w;
            let expected = match &skip_rows {
                Some((tile, rows)) if *tile == t.tile && rows.contains(&row) => (CLASS_NODATA, PROB_NODATA),
                _ => t.at(row, i % w),
            };
            assert_eq!((c, p), expected, "tile {} pixel ({row}, {})", t.tile, i % w);
        }
    }
}

/// The mosaic raster (VRT or COG) holds every tile's classes at the tile's place.
fn assert_mosaic_equals(set: &Set, path: &Path) {
    let grid = set.grid();
    let ds = Dataset::open(path).unwrap();
    let gt = ds.geo_transform().unwrap();
    let (class, w, h) = read::<u8>(path, 1);
    let (tc, tr) = grid.tile_pixels;
    let mut seen = 0;
    for t in &set.tiles {
        let tg = grid.geotransform(t.tile);
        let x0 = ((tg[0] - gt[0]) / gt[1]).round() as usize;
        let y0 = ((tg[3] - gt[3]) / gt[5]).round() as usize;
        assert!(x0 + tc <= w && y0 + tr <= h);
        for r in 0..tr {
            for c in 0..tc {
                assert_eq!(
                    class[(y0 + r) * w + x0 + c],
                    t.at(r, c).0,
                    "{} ({r}, {c}) in {}",
                    t.tile,
                    path.display()
                );
                seen += 1;
            }
        }
    }
    assert_eq!(seen, set.tiles.len() * tc * tr);
}

#[test]
fn chunk_files_round_trip_into_tiles_and_mosaics() {
    let set = set(4, 64, 20);
    let out = set.path("maps");
    let o = TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]);
    ok(&o);
    assert_tiles_equal(&set, &out, None);
    assert_mosaic_equals(&set, &out.join("mosaic_class.vrt"));
    assert_mosaic_equals(&set, &out.join("mosaic_class.tif"));
    let n = names(&out);
    for want in [
        "mosaic_class.tif",
        "mosaic_class.tif.aux.xml",
        "mosaic_class.vrt",
        "mosaic_prob.tif",
        "mosaic_prob.vrt",
        "mosaic_probabilities.vrt",
        "mosaic_uncertainty.tif",
        "mosaic_uncertainty.vrt",
        "quicklook.png",
    ] {
        assert!(n.contains(&want.to_string()), "{want} missing from {n:?}");
    }
    for t in &set.tiles {
        for p in ["class", "prob", "probabilities", "uncertainty"] {
            assert!(
                n.contains(&format!("{}_{p}.tif", t.tile)),
                "{}_{p}.tif missing",
                t.tile
            );
        }
    }
    // Nothing else, and no staging directory left beside the output.
    assert_eq!(names(set.dir.path()), vec!["chunks", "maps"]);

    // Per-class probabilities and uncertainty: exactly the chunks' values, nodata elsewhere.
    let t = &set.tiles[1];
    let k = tree_species().len();
    let probs_path = out.join(format!("{}_probabilities.tif", t.tile));
    let bands: Vec<Vec<u16>> = (1..=k).map(|b| read::<u16>(&probs_path, b).0).collect();
    let (unc, w, _) = read::<u16>(&out.join(format!("{}_uncertainty.tif", t.tile)), 1);
    let mut checked = 0;
    for c in &t.chunks {
        let p = c.probabilities.as_ref().unwrap();
        for i in 0..c.pixels() {
            let j = c.row[i] as usize * w + c.col[i] as usize;
            for (b, band) in bands.iter().enumerate() {
                assert_eq!(band[j], p[i * k + b]);
            }
            assert_eq!(unc[j], c.uncertainty.as_ref().unwrap()[i]);
            checked += 1;
        }
    }
    assert!(checked > 1000);
    let absent = t
        .class
        .iter()
        .zip(&unc)
        .filter(|(c, _)| **c == CLASS_NODATA)
        .count();
    assert!(absent > 0);
    assert!(t
        .class
        .iter()
        .zip(&unc)
        .filter(|(c, _)| **c == CLASS_NODATA)
        .all(|(_, u)| *u == PROB_NODATA));
    // The per-class mosaic VRT has one band per class, named after it.
    let vrt = Dataset::open(out.join("mosaic_probabilities.vrt")).unwrap();
    assert_eq!(vrt.raster_count(), k);
    assert_eq!(
        vrt.rasterband(7).unwrap().description().unwrap(),
        "probability of beech (0-1)"
    );
}

/// Offsets of a classic (little-endian) TIFF's IFDs, and of each IFD's image data (TileOffsets).
fn tiff_layout(path: &Path) -> (Vec<u64>, Vec<Vec<u64>>, bool) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"II*\0", "classic little-endian TIFF expected");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64;
    let mut ifds = Vec::new();
    let mut data = Vec::new();
    let mut tiled = true;
    let mut off = u32_at(4);
    while off != 0 {
        ifds.push(off);
        let n = u16_at(off as usize);
        let mut offsets = Vec::new();
        let mut has_tiles = false;
        for e in 0..n {
            let at = off as usize + 2 + e as usize * 12;
            let (tag, ty, count) = (u16_at(at), u16_at(at + 2), u32_at(at + 4));
            if tag == 322 {
                has_tiles = true;
            }
            if tag == 324 {
                assert_eq!(ty, 4, "TileOffsets as LONG");
                if count == 1 {
                    offsets.push(u32_at(at + 8));
                } else {
                    let base = u32_at(at + 8) as usize;
                    offsets.extend((0..count as usize).map(|i| u32_at(base + 4 * i)));
                }
            }
        }
        tiled &= has_tiles;
        data.push(offsets);
        off = u32_at(off as usize + 2 + n as usize * 12);
    }
    (ifds, data, tiled)
}

#[test]
fn cogs_are_tiled_with_overviews_in_cog_order_and_carry_the_class_table() {
    let set = set(4, 300, 100);
    let out = set.path("maps");
    ok(&TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]));
    for name in ["mosaic_class.tif", "mosaic_prob.tif"] {
        let path = out.join(name);
        let ds = Dataset::open(&path).unwrap();
        assert_eq!(
            ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
            Some("COG"),
            "{name}"
        );
        let band = ds.rasterband(1).unwrap();
        assert_eq!(band.block_size(), (512, 512), "{name}");
        assert!(band.overview_count().unwrap() > 0, "{name} has no overviews");
        // COG order: every IFD before any image data, and the smallest overview's data first.
        let (ifds, data, tiled) = tiff_layout(&path);
        assert!(tiled, "{name} is not tiled");
        assert!(ifds.len() >= 2);
        assert!(ifds.windows(2).all(|w| w[0] < w[1]), "{name}: IFDs out of order");
        let first_data = data.iter().flatten().filter(|&&o| o > 0).min().unwrap();
        assert!(
            ifds.iter().all(|i| i < first_data),
            "{name}: IFD after image data"
        );
        let full_min = data[0].iter().filter(|&&o| o > 0).min().unwrap();
        let last_max = data.last().unwrap().iter().max().unwrap();
        assert!(
            last_max < full_min,
            "{name}: overview data does not precede full-resolution data"
        );
    }
    assert_mosaic_equals(&set, &out.join("mosaic_class.tif"));

    // Colour table and category names, in the COG and in every tile.
    let classes = tree_species();
    for path in [
        out.join("mosaic_class.tif"),
        out.join(format!("{}_class.tif", set.tiles[2].tile)),
    ] {
        let ds = Dataset::open(&path).unwrap();
        let band = ds.rasterband(1).unwrap();
        assert_eq!(band.no_data_value(), Some(255.0));
        let table = band.color_table().expect("colour table");
        for c in &classes {
            let e = table.entry_as_rgb(usize::from(c.code)).unwrap();
            assert_eq!(
                [e.r, e.g, e.b],
                c.colour.map(i16::from),
                "{} of {}",
                c.name,
                path.display()
            );
        }
        let names = treesits_gdal::cog::read_category_names(&band);
        let expected: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, expected, "{}", path.display());
        let json = ds
            .metadata_item(treesits_core::names::CLASSES_METADATA_KEY, "")
            .unwrap();
        assert!(json.contains(r#""name":"Douglas fir""#), "{json}");
    }
    // Each tile says what it was made from.
    let src = &set.tiles[2].meta.source;
    let tile = Dataset::open(out.join(format!("{}_class.tif", set.tiles[2].tile))).unwrap();
    assert_eq!(
        tile.metadata_item("TREESITS_DATES", "").unwrap(),
        format!("{}/{}", src.date_start, src.date_end)
    );
    let sensors: Vec<&str> = src.sensors.iter().map(|s| s.name()).collect();
    assert_eq!(
        tile.metadata_item("TREESITS_SENSORS", "").unwrap(),
        sensors.join(",")
    );
    assert_eq!(
        tile.metadata_item("TREESITS_QAI_SCREEN", "").unwrap(),
        src.qai_screen
    );

    // Overviews: mode keeps classes (no value that is not a class); average keeps probabilities in range
    // and equals the mean of a fully valid 2 x 2 block.
    let ds = Dataset::open(out.join("mosaic_class.tif")).unwrap();
    let ov = ds.rasterband(1).unwrap().overview(0).unwrap();
    let (ow, oh) = ov.size();
    let v = ov
        .read_as::<u8>((0, 0), (ow, oh), (ow, oh), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    assert!(v
        .iter()
        .all(|&c| c == CLASS_NODATA || usize::from(c) < classes.len()));
    assert!(v.iter().filter(|&&c| c != CLASS_NODATA).count() > ow * oh / 4);
    let (full, w, _) = read::<u16>(&out.join("mosaic_prob.tif"), 1);
    let ds = Dataset::open(out.join("mosaic_prob.tif")).unwrap();
    let ov = ds.rasterband(1).unwrap().overview(0).unwrap();
    let (ow, oh) = ov.size();
    assert_eq!((ow, oh), (300, 300));
    let pv = ov
        .read_as::<u16>((0, 0), (ow, oh), (ow, oh), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    let mut compared = 0;
    for y in 0..oh {
        for x in 0..ow {
            let q = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(dy, dx)| full[(2 * y + dy) * w + 2 * x + dx]);
            if q.iter().all(|&p| p != PROB_NODATA) {
                let mean = q.iter().map(|&p| f64::from(p)).sum::<f64>() / 4.0;
                assert!(
                    (f64::from(pv[y * ow + x]) - mean).abs() <= 1.0,
                    "({x}, {y}): {} vs {mean}",
                    pv[y * ow + x]
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 1000);
}

/// Whole-tile streams (what `predict --out -` writes), several back to back on stdin.
fn streams(set: &Set) -> Vec<u8> {
    let mut all = Vec::new();
    for t in &set.tiles {
        all = t.write_stream(all).unwrap();
    }
    all
}

#[test]
fn stdin_streams_give_the_same_maps_as_files() {
    let set = set(3, 48, 16);
    let out = set.path("maps");
    let o = TOOL.run_stdin(&["--input", "-", "--out-dir", s(&out)], &streams(&set));
    ok(&o);
    assert_tiles_equal(&set, &out, None);
    assert_mosaic_equals(&set, &out.join("mosaic_class.tif"));
    // One info line per tile.
    let err = String::from_utf8_lossy(&o.stderr);
    for t in &set.tiles {
        assert_eq!(err.matches(&format!("tile {}: ", t.tile)).count(), 1, "{err}");
    }

    // Chunk files piped one after another work too, mixed with files for other tiles.
    let out2 = set.path("maps2");
    let mut piped = Vec::new();
    for i in 0..set.tiles[0].chunks.len() {
        let f = set.chunks().join(treesits_testkit::predictions::chunk_file_name(
            set.tiles[0].tile,
            i,
        ));
        piped.extend(std::fs::read(f).unwrap());
    }
    let rest: Vec<String> = set.tiles[1..]
        .iter()
        .map(|t| format!("{}/{}_chunk*.pred.arrows", set.chunks().display(), t.tile))
        .collect();
    let mut args = vec!["--input", "-"];
    args.extend(rest.iter().map(String::as_str));
    args.extend(["--out-dir", s(&out2)]);
    ok(&TOOL.run_stdin(&args, &piped));
    assert_tiles_equal(&set, &out2, None);
}

#[test]
fn a_missing_chunk_is_an_error_naming_tile_and_rows_unless_partial_maps_are_allowed() {
    let set = set(2, 64, 20);
    let t = &set.tiles[1];
    std::fs::remove_file(
        set.chunks()
            .join(treesits_testkit::predictions::chunk_file_name(t.tile, 2)),
    )
    .unwrap();
    let out = set.path("maps");
    let o = TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "mosaic: error: tile {}: chunk 2 of 4 missing (rows 40-59 never predicted)",
            t.tile
        )),
        "{e}"
    );
    assert!(e.contains("--allow-partial"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!out.exists());
    assert_eq!(names(set.dir.path()), vec!["chunks"], "nothing half-written");

    ok(&TOOL.run(&[
        "--input",
        s(&set.chunks()),
        "--out-dir",
        s(&out),
        "--allow-partial",
        "-q",
    ]));
    assert_tiles_equal(&set, &out, Some((t.tile, 40..60)));

    // A stream that ends early: the same, named by chunk count.
    let mut short = t.clone();
    short.chunks.truncate(3);
    let bytes = short.write_stream(Vec::new()).unwrap();
    let o = TOOL.run_stdin(&["--input", "-", "--out-dir", s(&set.path("m2"))], &bytes);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("tile {}: the stream ended after 3 of 4 chunks", t.tile)),
        "{e}"
    );
}

#[test]
fn mixed_class_tables_grids_and_duplicate_chunks_are_refused() {
    let set = set(2, 32, 16);
    let out = set.path("maps");
    let write_to = |t: &TilePredictions, dir: &str| {
        let d = set.path(dir);
        t.write_chunk_files(&d).unwrap();
        d
    };
    // Another class table.
    let mut other = set.tiles[1].clone();
    other.meta.classes[3].name = "Scots pine".into();
    let d = write_to(&other, "other_classes");
    let o = TOOL.run(&[
        "--input",
        s(&set
            .chunks()
            .join(format!("{}_chunk0000.pred.arrows", set.tiles[0].tile))),
        s(&d),
        "--out-dir",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another class table"), "{}", stderr(&o));
    // Another grid: the tile shifted by half a pixel.
    let mut shifted = set.tiles[1].clone();
    shifted.meta.source.geotransform[0] += 5.0;
    let d = write_to(&shifted, "shifted");
    let o = TOOL.run(&[
        "--input",
        s(&set
            .chunks()
            .join(format!("{}_chunk0000.pred.arrows", set.tiles[0].tile))),
        s(&set
            .chunks()
            .join(format!("{}_chunk0001.pred.arrows", set.tiles[0].tile))),
        s(&d),
        "--out-dir",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("is on another grid") && e.contains("--cube-def"),
        "{e}"
    );
    // The same chunk twice (two copies of a file).
    let copy = set.path("copy");
    std::fs::create_dir(&copy).unwrap();
    let name = format!("{}_chunk0001.pred.arrows", set.tiles[0].tile);
    std::fs::copy(set.chunks().join(&name), copy.join(&name)).unwrap();
    let o = TOOL.run(&["--input", s(&set.chunks()), s(&copy), "--out-dir", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("chunk 1 of tile {} is given twice", set.tiles[0].tile)),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // --cube-def with the cube's own grid accepts the shifted tile and puts it on the grid.
    let prj = set.path("datacube-definition.prj");
    std::fs::write(
        &prj,
        set.cfg
            .cube_definition()
            .to_prj(treesits_core::grid::PrjForm::Lines),
    )
    .unwrap();
    let o = TOOL.run(&[
        "--input",
        s(&set
            .chunks()
            .join(format!("{}_chunk0000.pred.arrows", set.tiles[0].tile))),
        s(&set
            .chunks()
            .join(format!("{}_chunk0001.pred.arrows", set.tiles[0].tile))),
        s(&d),
        "--cube-def",
        s(&prj),
        "--out-dir",
        s(&out),
    ]);
    ok(&o);
    assert!(stderr(&o).contains("using --cube-def"), "{}", stderr(&o));
    let ds = Dataset::open(out.join(format!("{}_class.tif", set.tiles[1].tile))).unwrap();
    assert_eq!(
        ds.geo_transform().unwrap(),
        set.grid().geotransform(set.tiles[1].tile)
    );
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_exit_codes() {
    let set = set(1, 32, 16);
    let out = set.path("maps");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--input".into(), s(&set.path("nope")).into()],
            "no such file or directory",
        ),
        (
            vec!["--input".into(), s(set.dir.path()).into()],
            "holds no *.pred.arrows files",
        ),
        (
            vec![
                "--input".into(),
                format!("{}/X9*.pred.arrows", set.chunks().display()),
            ],
            "matches no files",
        ),
        (
            vec![
                "--input".into(),
                s(&set.chunks()).into(),
                "--t-srs".into(),
                "web".into(),
            ],
            "not an EPSG code",
        ),
        (
            vec![
                "--input".into(),
                s(&set.chunks()).into(),
                "--t-srs".into(),
                "999999".into(),
            ],
            "not a CRS GDAL knows",
        ),
        (
            vec![
                "--input".into(),
                s(&set.chunks()).into(),
                "--clip".into(),
                s(&set.path("none.gpkg")).into(),
            ],
            "--clip",
        ),
        (
            vec![
                "--input".into(),
                s(&set.chunks()).into(),
                "--cube-def".into(),
                s(&set.path("x.prj")).into(),
            ],
            "cannot read --cube-def",
        ),
    ];
    for (args, needle) in cases {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--out-dir", s(&out)]);
        let o = TOOL.run(&a);
        assert_eq!(o.status.code(), Some(1), "{a:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.starts_with("mosaic: error: ") && e.contains(needle),
            "{a:?}: {e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!out.exists());
    }
    // A time-series chunk is not a prediction chunk.
    let ts = set.path("ts.arrows");
    {
        let m = set.tiles[0].meta.source.clone();
        let mut w = treesits_core::chunk::ChunkWriter::new(std::fs::File::create(&ts).unwrap(), &m).unwrap();
        w.write(&treesits_core::chunk::ChunkColumns {
            offsets: vec![0],
            bands: vec![vec![]; m.band_names.len()],
            ..Default::default()
        })
        .unwrap();
        w.finish().unwrap();
    }
    let o = TOOL.run(&["--input", s(&ts), "--out-dir", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("goes to predict"), "{}", stderr(&o));
    // Garbage on stdin.
    let o = TOOL.run_stdin(&["--input", "-", "--out-dir", s(&out)], b"not arrow at all");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("stdin: stream 1 is not a prediction stream"),
        "{}",
        stderr(&o)
    );
    // Usage errors exit with 2.
    assert_eq!(TOOL.run(&["--out-dir", s(&out)]).status.code(), Some(2));
    assert_eq!(
        TOOL.run(&["--input", "x", "--out-dir", s(&out), "--class-overviews", "mean"])
            .status
            .code(),
        Some(2)
    );
    assert!(!out.exists());
}

/// Pixel centres of a tile inside any AOI polygon, decided with GEOS (not the rasteriser mosaic uses).
fn inside(polygons: &[Geometry], grid: &TileGrid, tile: TileId, row: usize, col: usize) -> bool {
    let (x, y) = grid.pixel_centre(tile, row, col);
    let p = Geometry::from_wkt(&format!("POINT ({x} {y})")).unwrap();
    polygons.iter().any(|g| g.contains(&p))
}

#[test]
fn clip_and_reprojection_are_checked_on_known_pixels() {
    let set = set(4, 64, 32);
    let manifest = treesits_testkit::generate(&set.cfg).unwrap();
    let out = set.path("maps");
    let aoi = set.cfg.out.join("aoi.gpkg");
    let o = TOOL.run(&[
        "--input",
        s(&set.chunks()),
        "--out-dir",
        s(&out),
        "--clip",
        s(&aoi),
        "--t-srs",
        "EPSG:3857",
        "-q",
    ]);
    ok(&o);
    let polygons: Vec<Geometry> = manifest
        .aoi
        .features
        .iter()
        .map(|f| Geometry::from_wkt(&f.wkt_laea).unwrap())
        .collect();
    let grid = set.grid();
    let (mut kept, mut cut) = (0, 0);
    for t in &set.tiles {
        let path = out.join(format!("{}_class.tif", t.tile));
        if !path.exists() {
            // Left out only when no polygon reaches the tile at all.
            for r in 0..64 {
                for c in 0..64 {
                    assert!(!inside(&polygons, &grid, t.tile, r, c));
                }
            }
            continue;
        }
        let (class, w, _) = read::<u8>(&path, 1);
        for (i, &v) in class.iter().enumerate() {
            let (r, c) = (i / w, i % w);
            let expected = t.at(r, c).0;
            if inside(&polygons, &grid, t.tile, r, c) {
                assert_eq!(v, expected, "{} ({r}, {c}) inside", t.tile);
                kept += usize::from(expected != CLASS_NODATA);
            } else {
                assert_eq!(v, CLASS_NODATA, "{} ({r}, {c}) outside the AOI", t.tile);
                cut += usize::from(expected != CLASS_NODATA);
            }
        }
    }
    assert!(kept > 500 && cut > 500, "kept {kept}, cut {cut}");

    // The web mosaic: a pixel centre reprojected to EPSG:3857 lands on the same class, for pixels
    // whose 3 x 3 neighbourhood is one class (so resampling at the edges does not matter).
    let web = Dataset::open(out.join("mosaic_class_epsg3857.tif")).unwrap();
    assert_eq!(web.spatial_ref().unwrap().auth_code().unwrap(), 3857);
    assert_eq!(
        web.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
        Some("COG")
    );
    let wgt = web.geo_transform().unwrap();
    let (ww, wh) = web.raster_size();
    let wv = web
        .rasterband(1)
        .unwrap()
        .read_as::<u8>((0, 0), (ww, wh), (ww, wh), None)
        .unwrap()
        .into_shape_and_vec()
        .1;
    let mut laea = SpatialRef::from_epsg(3035).unwrap();
    laea.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut merc = SpatialRef::from_epsg(3857).unwrap();
    merc.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_web = CoordTransform::new(&laea, &merc).unwrap();
    let mut checked = 0;
    for t in &set.tiles {
        let path = out.join(format!("{}_class.tif", t.tile));
        if !path.exists() {
            continue;
        }
        let (class, w, h) = read::<u8>(&path, 1);
        for r in (1..h - 1).step_by(3) {
            for c in (1..w - 1).step_by(3) {
                let v = class[r * w + c];
                let uniform = (0..3).all(|dy| (0..3).all(|dx| class[(r + dy - 1) * w + c + dx - 1] == v));
                if !uniform {
                    continue;
                }
                let (x, y) = grid.pixel_centre(t.tile, r, c);
                let (mut xs, mut ys, mut zs) = ([x], [y], [0.0]);
                to_web.transform_coords(&mut xs, &mut ys, &mut zs).unwrap();
                assert!(
                    xs[0] >= wgt[0]
                        && ys[0] <= wgt[3]
                        && xs[0] < wgt[0] + wgt[1] * ww as f64
                        && ys[0] > wgt[3] + wgt[5] * wh as f64,
                    "{:?} {:?} {:?} {:?}",
                    (x, y),
                    (xs, ys),
                    wgt,
                    (ww, wh)
                );
                let px = ((xs[0] - wgt[0]) / wgt[1]).floor() as usize;
                let py = ((ys[0] - wgt[3]) / wgt[5]).floor() as usize;
                assert_eq!(wv[py * ww + px], v, "{} ({r}, {c})", t.tile);
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked}");
}

#[test]
fn chunks_read_back_with_the_prediction_reader() {
    // The fixture itself: files are named and hold what the testkit says (guards the other tests).
    let set = set(1, 32, 16);
    let t = &set.tiles[0];
    let f = set.chunks().join(format!("{}_chunk0001.pred.arrows", t.tile));
    let r = PredictionReader::new(std::fs::File::open(f).unwrap()).unwrap();
    assert_eq!(r.metadata().source.window.row, 16);
    assert_eq!(
        r.map(|c| c.unwrap()).collect::<Vec<_>>(),
        vec![t.chunks[1].clone()]
    );
}

#[test]
fn a_whole_tile_stream_file_works_and_a_rerun_replaces_earlier_products_only() {
    let set = set(2, 32, 16);
    let out = set.path("maps");
    ok(&TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]));
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    // Second run: only the first tile, given as one whole-tile stream file (predict --out - > file).
    let stream = set.path("tile.pred.arrows");
    std::fs::write(&stream, set.tiles[0].write_stream(Vec::new()).unwrap()).unwrap();
    ok(&TOOL.run(&["--input", s(&stream), "--out-dir", s(&out), "-q"]));
    let n = names(&out);
    assert!(n.contains(&"notes.txt".to_string()), "{n:?}");
    assert!(n.contains(&format!("{}_class.tif", set.tiles[0].tile)));
    assert!(
        !n.iter().any(|f| f.starts_with(&set.tiles[1].tile.to_string())),
        "products of the earlier run remain: {n:?}"
    );
    let one = Set {
        dir: tempfile::tempdir().unwrap(),
        cfg: set.cfg.clone(),
        tiles: vec![set.tiles[0].clone()],
    };
    assert_tiles_equal(&one, &out, None);
    assert_mosaic_equals(&one, &out.join("mosaic_class.tif"));
    assert_eq!(names(set.dir.path()), vec!["chunks", "maps", "tile.pred.arrows"]);
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help*.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}

/// `--class-overviews` takes what its help says (mode|nearest): averaging class codes is refused.
#[test]
fn class_overviews_cannot_average_class_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("map");
    let r = TOOL.run(&[
        "--input",
        "-",
        "--out-dir",
        s(&out),
        "--class-overviews",
        "average",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("average would average class codes"),
        "{}",
        stderr(&r)
    );
    assert!(!out.exists());
}

/// A disk that fills during the run and frees again (another job's files) makes GDAL fail some
/// block writes: the run fails naming the file, commits nothing, and the previous map stays whole.
/// (Before: exit 0 with unreadable tiles committed.)
#[test]
fn a_disk_that_fills_and_frees_during_the_run_fails_it_and_keeps_the_previous_map() {
    let Some(d) = disk::Disk::mount("mosaic disk-full test", 32 << 20) else {
        return;
    };
    let set = set(4, 200, 50);
    // What one run writes into the per-tile GeoTIFFs (before the mosaics), measured on the
    // ordinary disk: the disk fills while the tiles are written.
    let scratch = set.path("scratch");
    ok(&TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&scratch), "-q"]));
    let tiles: u64 = names(&scratch)
        .iter()
        .filter(|n| n.starts_with('X'))
        .map(|n| scratch.join(n).metadata().unwrap().len())
        .sum();
    let out = d.dir.join("map");
    ok(&TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]));
    let before = names(&out);

    let watcher = d.fill_then_free(tiles / 3);
    let o = TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]);
    assert!(watcher.stop(), "the disk never filled: the test proved nothing");
    TOOL.fails_with(&o, "writing ");
    let line = stderr(&o);
    assert!(
        line.contains(".tif"),
        "the error names the GeoTIFF that failed: {line}"
    );
    assert_eq!(
        line.lines().count(),
        1,
        "one line, not GDAL's echo of every block: {line}"
    );
    // Nothing of the failed run is left; the earlier map is whole and reads back exactly.
    assert_eq!(treesits_testkit::cli::file_names(&d.dir), vec!["map"]);
    assert_eq!(names(&out), before);
    assert_tiles_equal(&set, &out, None);
    assert_mosaic_equals(&set, &out.join("mosaic_class.tif"));
}

/// Killed between taking the old map away and putting the new one in place (the commit's only
/// non-atomic moment), a run leaves no map rather than a mixture; the next run cleans up and commits.
/// (Before: products were moved in one by one after the old ones were deleted.)
#[test]
fn a_run_killed_during_its_commit_leaves_the_old_map_or_none_never_a_mixture() {
    let set = set(2, 32, 16);
    let out = set.path("maps");
    ok(&TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]));
    let one_tile = set.path("one");
    set.tiles[0].write_chunk_files(&one_tile).unwrap();
    let o = TOOL
        .command()
        .args(["--input", s(&one_tile), "--out-dir", s(&out), "-q"])
        .env("TREESITS_TEST_ABORT", "staged-dir-swap")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed in its commit: {}", stderr(&o));
    assert!(!out.exists(), "a killed commit leaves no half-replaced map");
    // A reader finds no map at all (never one naming tiles from two runs).
    assert!(Dataset::open(out.join("mosaic_class.vrt")).is_err());
    // The next run commits and removes what the killed one left beside the directory.
    ok(&TOOL.run(&["--input", s(&one_tile), "--out-dir", s(&out), "-q"]));
    assert_eq!(names(set.dir.path()), vec!["chunks", "maps", "one"]);
    let one = Set {
        dir: tempfile::tempdir().unwrap(),
        cfg: set.cfg.clone(),
        tiles: vec![set.tiles[0].clone()],
    };
    assert_tiles_equal(&one, &out, None);
    assert!(!names(&out)
        .iter()
        .any(|f| f.starts_with(&set.tiles[1].tile.to_string())));
}

/// A second run into a directory another run is writing is refused at once (the lock
/// `<parent>/.<name>.lock`), and changes nothing; stale staging directories of killed runs go.
/// (Before: the last run silently replaced the other's files; staging directories stayed.)
#[test]
fn a_second_run_into_the_same_directory_is_refused_and_killed_runs_leftovers_go() {
    let set = set(2, 32, 16);
    let out = set.path("maps");
    ok(&TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]));
    let before = names(&out);
    // Another run holds the lock.
    let lock = std::fs::File::create(set.path(".maps.lock")).unwrap();
    lock.lock().unwrap();
    let one_tile = set.path("one");
    set.tiles[0].write_chunk_files(&one_tile).unwrap();
    let o = TOOL.run(&["--input", s(&one_tile), "--out-dir", s(&out), "-q"]);
    TOOL.fails_with(&o, "another run is writing");
    assert!(stderr(&o).contains("maps"), "{}", stderr(&o));
    assert_eq!(names(&out), before);
    assert_tiles_equal(&set, &out, None);
    drop(lock);
    // What killed runs left beside the directory (a staging directory with a big half-written
    // tile, an old map taken away) is removed by the next run.
    for left in [".maps.partial-999999", ".maps.replaced-999998"] {
        std::fs::create_dir(set.path(left)).unwrap();
        std::fs::write(set.path(left).join("X0001_Y0001_prob.tif"), vec![0u8; 1 << 20]).unwrap();
    }
    ok(&TOOL.run(&["--input", s(&one_tile), "--out-dir", s(&out), "-q"]));
    assert_eq!(names(set.dir.path()), vec!["chunks", "maps", "one"]);
}

/// Chunks of one tile from two runs (another date window: a directory a killed cube-extract left
/// mixed) are refused, and so is a chunk that gives a pixel twice. (Before: both mapped, exit 0.)
#[test]
fn chunks_of_two_runs_and_duplicated_pixels_are_refused() {
    let set = set(1, 32, 16);
    let out = set.path("maps");
    let t = &set.tiles[0];
    let mut later = t.clone();
    later.meta.source.date_end = "2022-06-30".parse().unwrap();
    let later_dir = set.path("later");
    later.write_chunk_files(&later_dir).unwrap();
    let o = TOOL.run(&[
        "--input",
        s(&set.chunks().join(format!("{}_chunk0000.pred.arrows", t.tile))),
        s(&later_dir.join(format!("{}_chunk0001.pred.arrows", t.tile))),
        "--out-dir",
        s(&out),
    ]);
    TOOL.fails_with(&o, "come from different runs");
    assert!(stderr(&o).contains("2022-06-30"), "{}", stderr(&o));
    assert!(!out.exists());
    // The same mixture on stdin (chunk files piped one after another).
    let mut streams = std::fs::read(set.chunks().join(format!("{}_chunk0000.pred.arrows", t.tile))).unwrap();
    streams.extend(std::fs::read(later_dir.join(format!("{}_chunk0001.pred.arrows", t.tile))).unwrap());
    let o = TOOL.run_stdin(&["--input", "-", "--out-dir", s(&out)], &streams);
    TOOL.fails_with(&o, "come from different runs");

    // A pixel given twice in one chunk.
    let mut dup = t.clone();
    let c = &mut dup.chunks[1];
    let (r, col, cl, p) = (c.row[3], c.col[3], c.class[3], c.prob[3]);
    c.row.push(r);
    c.col.push(col);
    c.class.push(cl);
    c.prob.push(p);
    let k = dup.meta.classes.len();
    if let Some(v) = &mut c.probabilities {
        let again: Vec<u16> = v[3 * k..4 * k].to_vec();
        v.extend(again);
    }
    if let Some(v) = &mut c.uncertainty {
        v.push(v[3]);
    }
    let dup_dir = set.path("dup");
    dup.write_chunk_files(&dup_dir).unwrap();
    let o = TOOL.run(&["--input", s(&dup_dir), "--out-dir", s(&out)]);
    TOOL.fails_with(&o, &format!("pixel (row {r}, col {col}) appears twice"));
    assert!(stderr(&o).contains("chunk0001"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// Where the batch of a one-batch prediction file lies: after the schema message and the batch's
/// own header, before the 8-byte end-of-stream marker.
fn batch_body(bytes: &[u8]) -> std::ops::Range<usize> {
    let len = |at: usize| i32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    let batch = 8 + len(0);
    batch + 8 + len(batch)..bytes.len() - 8
}

/// Integrity (issue 20): a prediction chunk with a bit flipped in its batch (every 61st byte, each
/// flip its own run) or without its end-of-stream marker is refused with one line naming the file,
/// and no map is committed; a flip that reads back (padding) must give exactly the right maps.
#[test]
fn bit_flipped_and_cut_prediction_chunks_are_refused_and_nothing_is_committed() {
    let set = set(1, 32, 16);
    let files = names(&set.chunks());
    let name = files[0].clone();
    let path = set.chunks().join(&name);
    let intact = std::fs::read(&path).unwrap();
    let out = set.path("maps");
    let run = || TOOL.run(&["--input", s(&set.chunks()), "--out-dir", s(&out), "-q"]);
    let (mut refused, mut harmless) = (0, 0);
    for p in batch_body(&intact).step_by(61) {
        let mut b = intact.clone();
        b[p] ^= 1 << (p % 8);
        std::fs::write(&path, &b).unwrap();
        let r = run();
        if r.status.success() {
            assert_tiles_equal(&set, &out, None);
            std::fs::remove_dir_all(&out).unwrap();
            harmless += 1;
            continue;
        }
        TOOL.fails_with(&r, &format!("{name}: "));
        assert!(stderr(&r).contains("damaged"), "byte {p} flipped: {}", stderr(&r));
        assert!(!out.exists(), "byte {p} flipped: nothing committed");
        refused += 1;
    }
    assert!(
        refused >= 10 && harmless <= refused / 10,
        "{refused} refused, {harmless} harmless"
    );

    // Without its end-of-stream marker (a killed predict, a truncated copy).
    std::fs::write(&path, &intact[..intact.len() - 8]).unwrap();
    let r = run();
    TOOL.fails_with(
        &r,
        &format!("{name}: the stream is cut short (no end-of-stream marker)"),
    );
    assert!(stderr(&r).contains("re-run predict"));
    assert!(!out.exists());
    std::fs::write(&path, &intact).unwrap();
    ok(&run());
    assert_tiles_equal(&set, &out, None);
}
