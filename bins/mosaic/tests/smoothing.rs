//! `mosaic --smooth bayes` on synthetic predictions with label noise: the smoothed tiles equal the
//! smoothing of the whole area at once (no seams), isolated wrong pixels are put right, nodata
//! stays, the map gets more accurate, and chunks without per-class probabilities are refused.

use std::path::{Path, PathBuf};

use gdal::{Dataset, Metadata};
use treesits_core::prediction::{scale_prob, Uncertainty, PROB_NODATA};
use treesits_core::species::{tree_species, CLASS_NODATA};
use treesits_map::smooth::{
    BayesSmoothing, ClassBlock, MajorityFilter, ProbabilityBlock, Smoothing, SMOOTHING_METADATA_KEY,
};
use treesits_testkit::cli::{s, stderr, Tool};
use treesits_testkit::noise::{hash, unit};
use treesits_testkit::predictions::{tile_predictions, PredictionSpec, TilePredictions};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("mosaic", env!("CARGO_BIN_EXE_mosaic"));

/// Noisy predictions of a block of synthetic tiles, as chunk files in `chunks/`.
struct Noisy {
    dir: tempfile::TempDir,
    tiles: Vec<TilePredictions>,
    /// Per tile: the class before the noise (the truth where mapped), row-major.
    truth: Vec<Vec<u8>>,
    /// Per tile: whether the noise changed the pixel's class.
    flipped: Vec<Vec<bool>>,
}

impl Noisy {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Label noise: a share `rate` of the mapped pixels (by a hash of their place) gets a wrong class,
/// the probabilities (if any) of the true and the wrong class swapped, as a confused model would give.
fn add_noise(t: &mut TilePredictions, rate: f64) -> Vec<bool> {
    let (cols, rows) = t.meta.source.tile_size;
    let k = t.meta.classes.len();
    let mut flipped = vec![false; cols * rows];
    for c in &mut t.chunks {
        for i in 0..c.class.len() {
            let truth = c.class[i];
            if truth == CLASS_NODATA {
                continue;
            }
            let (row, col) = (c.row[i] as usize, c.col[i] as usize);
            let gx = t.tile.x as i64 * cols as i64 + col as i64;
            let gy = t.tile.y as i64 * rows as i64 + row as i64;
            let h = hash(7, 0x6e6f_6973, gx as u64, gy as u64);
            if unit(h) >= rate {
                continue;
            }
            let wrong = (usize::from(truth) + 1 + (h % (k as u64 - 1)) as usize) % k;
            if let Some(probs) = c.probabilities.as_mut() {
                probs.swap(i * k + usize::from(truth), i * k + wrong);
            }
            c.class[i] = wrong as u8;
            t.class[row * cols + col] = wrong as u8;
            flipped[row * cols + col] = true;
        }
    }
    flipped
}

fn noisy(tiles: usize, size: usize, rate: f64, spec: PredictionSpec) -> Noisy {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 11,
        tiles,
        tile_pixels: size,
        dates: 1,
        ..Default::default()
    };
    let mut preds: Vec<TilePredictions> = cfg
        .tile_ids()
        .into_iter()
        .map(|t| tile_predictions(&cfg, t, &spec))
        .collect();
    let truth = preds.iter().map(|t| t.class.clone()).collect();
    let flipped = preds.iter_mut().map(|t| add_noise(t, rate)).collect();
    let n = Noisy {
        dir,
        tiles: preds,
        truth,
        flipped,
    };
    for t in &n.tiles {
        t.write_chunk_files(&n.path("chunks")).unwrap();
    }
    n
}

fn spec() -> PredictionSpec {
    PredictionSpec {
        chunk_rows: 20,
        ..Default::default()
    }
}

/// Runs mosaic into `out` with `extra` arguments and checks it succeeded.
fn map(n: &Noisy, out: &str, extra: &[&str]) -> PathBuf {
    let out = n.path(out);
    let chunks = n.path("chunks");
    let mut args = vec!["--input", s(&chunks), "--out-dir", s(&out), "-q"];
    args.extend_from_slice(extra);
    TOOL.ok(&TOOL.run(&args));
    out
}

/// Every band of a raster, band after band, and its size.
fn read_all(path: &Path) -> (Vec<Vec<u16>>, usize, usize) {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (w, h) = ds.raster_size();
    let bands = (1..=ds.raster_count())
        .map(|b| {
            ds.rasterband(b)
                .unwrap()
                .read_as::<u16>((0, 0), (w, h), (w, h), None)
                .unwrap()
                .into_shape_and_vec()
                .1
        })
        .collect();
    (bands, w, h)
}

/// The smoothing of a whole raster of per-class probabilities at once, nodata around it.
fn smooth_whole(
    bands: &[Vec<u16>],
    w: usize,
    h: usize,
    params: &BayesSmoothing,
) -> treesits_map::smooth::SmoothedBlock {
    let halo = params.halo();
    let (bw, bh) = (w + 2 * halo, h + 2 * halo);
    let k = bands.len();
    let mut values = vec![PROB_NODATA; bw * bh * k];
    for (b, band) in bands.iter().enumerate() {
        for r in 0..h {
            let dst = (b * bh + r + halo) * bw + halo;
            values[dst..dst + w].copy_from_slice(&band[r * w..(r + 1) * w]);
        }
    }
    params.smooth(&ProbabilityBlock {
        width: bw,
        height: bh,
        classes: k,
        values,
    })
}

/// The smoothed mosaics equal the smoothing of the unsmoothed mosaic as one raster, pixel for
/// pixel, tile edges included (and a tile smoothed alone, without its neighbours' halo, would not).
fn assert_no_seams(tiles: usize, size: usize, params: BayesSmoothing, flags: &[&str]) {
    let n = noisy(tiles, size, 0.2, spec());
    let raw = map(&n, "raw", &[]);
    let mut args = vec!["--smooth", "bayes"];
    args.extend_from_slice(flags);
    let smoothed = map(&n, "smoothed", &args);

    let (bands, w, h) = read_all(&raw.join("mosaic_probabilities.vrt"));
    let k = bands.len();
    assert_eq!(k, tree_species().len());
    let want = smooth_whole(&bands, w, h, &params);
    let (class, cw, ch) = read_all(&smoothed.join("mosaic_class.vrt"));
    assert_eq!((cw, ch), (w, h));
    let (prob, _, _) = read_all(&smoothed.join("mosaic_prob.vrt"));
    let (probs, _, _) = read_all(&smoothed.join("mosaic_probabilities.vrt"));
    let (unc, _, _) = read_all(&smoothed.join("mosaic_uncertainty.vrt"));
    let (raw_class, _, _) = read_all(&raw.join("mosaic_class.vrt"));
    let mut changed_at_edges = 0;
    let mut mapped = 0;
    for i in 0..w * h {
        let (r, c) = (i / w, i % w);
        let at = format!("mosaic pixel ({r}, {c})");
        match want.pixel(i) {
            None => {
                assert_eq!(class[0][i], u16::from(CLASS_NODATA), "{at}");
                assert_eq!(prob[0][i], PROB_NODATA, "{at}");
                assert!(probs.iter().all(|b| b[i] == PROB_NODATA), "{at}");
                assert_eq!(unc[0][i], PROB_NODATA, "{at}");
            }
            Some(p) => {
                mapped += 1;
                let best = want.best[i].unwrap();
                assert_eq!(class[0][i], best as u16, "{at}");
                assert_eq!(prob[0][i], scale_prob(p[best]), "{at}");
                for b in 0..k {
                    assert_eq!(probs[b][i], scale_prob(p[b]), "{at} band {b}");
                }
                assert_eq!(unc[0][i], scale_prob(Uncertainty::Margin.of(p)), "{at}");
                let near_edge = |v: usize| {
                    let m = v % size;
                    m < params.halo() || m >= size - params.halo()
                };
                if (near_edge(r) || near_edge(c)) && class[0][i] != raw_class[0][i] {
                    changed_at_edges += 1;
                }
            }
        }
    }
    assert!(mapped > w * h / 3, "{mapped} of {} pixels mapped", w * h);
    assert!(
        changed_at_edges > 10,
        "smoothing changed {changed_at_edges} pixels near tile edges"
    );

    // A tile smoothed alone differs from the mosaic near its edges: the halo matters.
    let t = &n.tiles[0];
    let file = |dir: &Path, p: &str| dir.join(format!("{}_{p}.tif", t.tile));
    let (tile_bands, tw, th) = read_all(&file(&raw, "probabilities"));
    let alone = smooth_whole(&tile_bands, tw, th, &params);
    let (tile_class, _, _) = read_all(&file(&smoothed, "class"));
    let differ = (0..tw * th)
        .filter(|&i| alone.best[i].map_or(u16::from(CLASS_NODATA), |b| b as u16) != tile_class[0][i])
        .count();
    assert!(
        differ > 0,
        "the tile smoothed alone equals the mosaic's: the seam test cannot fail"
    );

    // The products say how they were smoothed, and keep their styling.
    let ds = Dataset::open(file(&smoothed, "class")).unwrap();
    assert_eq!(
        ds.metadata_item(SMOOTHING_METADATA_KEY, "").as_deref(),
        Some(Smoothing::Bayes(params).describe().as_str())
    );
    let band = ds.rasterband(1).unwrap();
    assert!(band.color_table().is_some());
    assert_eq!(band.no_data_value(), Some(f64::from(CLASS_NODATA)));
    assert!(ds.metadata_item("TREESITS_MODEL_ID", "").is_some());
    for product in ["prob", "probabilities", "uncertainty"] {
        let ds = Dataset::open(file(&smoothed, product)).unwrap();
        for b in 1..=ds.raster_count() {
            let band = ds.rasterband(b).unwrap();
            assert_eq!(band.scale(), Some(1e-4), "{product} band {b} keeps its scale");
            assert_eq!(band.offset(), Some(0.0), "{product} band {b} keeps its offset");
        }
    }
    let names = treesits_testkit::cli::file_names(&smoothed);
    assert!(
        !names.iter().any(|f| f.contains("smoothing")),
        "no scratch file left: {names:?}"
    );
}

#[test]
fn a_smoothed_mosaic_of_three_tiles_equals_the_smoothing_of_the_whole_area() {
    // Three tiles of a 2 x 2 block: the fourth is missing, nodata in the VRTs, and votes nowhere.
    assert_no_seams(3, 40, BayesSmoothing::default(), &[]);
}

/// Tiles taller than one band of blocks (256 rows) are smoothed band by band: the band edges
/// join without seams too; and the parameters given are the ones used.
#[test]
fn tiles_are_smoothed_band_by_band_without_seams() {
    let params = BayesSmoothing {
        window: 5,
        neighbour_fraction: 0.6,
        smoothness: 20.0,
    };
    assert_no_seams(
        2,
        270,
        params,
        &[
            "--smooth-window",
            "5",
            "--neighbour-fraction",
            "0.6",
            "--smoothness",
            "20",
        ],
    );
}

/// Overall accuracy (share of mapped pixels whose class is the truth) of the class tiles in `dir`.
fn accuracy(n: &Noisy, dir: &Path) -> f64 {
    let (mut right, mut all) = (0u64, 0u64);
    for (t, truth) in n.tiles.iter().zip(&n.truth) {
        let (class, _, _) = read_all(&dir.join(format!("{}_class.tif", t.tile)));
        for (&c, &want) in class[0].iter().zip(truth) {
            if want == CLASS_NODATA {
                assert_eq!(c, u16::from(CLASS_NODATA), "nodata stays nodata");
                continue;
            }
            assert_ne!(c, u16::from(CLASS_NODATA), "mapped pixels stay mapped");
            all += 1;
            right += u64::from(c == u16::from(want));
        }
    }
    right as f64 / all as f64
}

#[test]
fn smoothing_makes_a_noisy_map_more_accurate_and_puts_isolated_pixels_right() {
    let n = noisy(4, 64, 0.15, spec());
    let raw = map(&n, "raw", &[]);
    let smoothed = map(&n, "smoothed", &["--smooth", "bayes"]);
    let (before, after) = (accuracy(&n, &raw), accuracy(&n, &smoothed));
    eprintln!("overall accuracy: {before:.4} without smoothing, {after:.4} with --smooth bayes");
    assert!(before < 0.9, "the noise makes the map wrong enough: {before}");
    assert!(after > before + 0.05, "smoothing: {before} -> {after}");

    // A wrong pixel whose 8 neighbours are all right and of one class gets that class.
    let mut isolated = 0;
    for ((t, truth), flipped) in n.tiles.iter().zip(&n.truth).zip(&n.flipped) {
        let size = t.meta.source.tile_size.0;
        let (class, _, _) = read_all(&smoothed.join(format!("{}_class.tif", t.tile)));
        for r in 1..size - 1 {
            for c in 1..size - 1 {
                let i = r * size + c;
                if !flipped[i] {
                    continue;
                }
                let around: Vec<usize> = (r - 1..=r + 1)
                    .flat_map(|y| (c - 1..=c + 1).map(move |x| y * size + x))
                    .filter(|&j| j != i)
                    .collect();
                if around.iter().all(|&j| !flipped[j] && truth[j] == truth[i]) {
                    isolated += 1;
                    assert_eq!(class[0][i], u16::from(truth[i]), "tile {} ({r}, {c})", t.tile);
                }
            }
        }
    }
    assert!(isolated > 20, "only {isolated} isolated wrong pixels");
}

#[test]
fn smoothing_needs_per_class_probabilities() {
    let n = noisy(
        2,
        32,
        0.0,
        PredictionSpec {
            probabilities: false,
            ..spec()
        },
    );
    let out = n.path("maps");
    let chunks = n.path("chunks");
    let r = TOOL.run(&["--input", s(&chunks), "--out-dir", s(&out), "--smooth", "bayes"]);
    TOOL.fails_with(&r, "predict with --probabilities");
    assert!(
        stderr(&r).contains(&n.tiles[0].tile.to_string()),
        "{}",
        stderr(&r)
    );
    assert!(!out.exists(), "nothing written on error");
}

#[test]
fn smoothing_parameters_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("maps");
    for (flags, want) in [
        (vec!["--smooth", "bayes", "--smooth-window", "4"], "odd number"),
        (
            vec!["--smooth", "bayes", "--neighbour-fraction", "1.5"],
            "at most 1",
        ),
        (vec!["--smooth", "bayes", "--smoothness", "0"], "above 0"),
        (
            vec!["--smooth", "bayes", "--mmu", "4"],
            "--mmu works with --smooth majority",
        ),
        (
            vec!["--smooth", "majority", "--smooth-window", "2"],
            "from 1 to 21",
        ),
    ] {
        let mut args = vec!["--input", "-", "--out-dir", s(&out)];
        args.extend(flags);
        TOOL.fails_with(&TOOL.run_stdin(&args, b""), want);
    }
    // Tuning without --smooth is a usage error.
    let r = TOOL.run(&["--input", "-", "--out-dir", s(&out), "--smoothness", "5"]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(!out.exists());
}

/// `--smooth majority --mmu`: the class tiles equal the filter of the whole unsmoothed class mosaic
/// at once (tile edges included); the probability products stay predict's; the map gets more
/// accurate; it needs no per-class probabilities.
#[test]
fn a_majority_filtered_mosaic_equals_the_filter_of_the_whole_area() {
    let params = MajorityFilter { window: 5, mmu: 40 };
    for probabilities in [true, false] {
        let n = noisy(
            4,
            40,
            0.15,
            PredictionSpec {
                probabilities,
                ..spec()
            },
        );
        let raw = map(&n, "raw", &[]);
        let smoothed = map(
            &n,
            "smoothed",
            &["--smooth", "majority", "--smooth-window", "5", "--mmu", "40"],
        );
        let (class, w, h) = read_all(&raw.join("mosaic_class.vrt"));
        let halo = params.halo();
        let (bw, bh) = (w + 2 * halo, h + 2 * halo);
        let mut values = vec![CLASS_NODATA; bw * bh];
        for r in 0..h {
            for c in 0..w {
                values[(r + halo) * bw + c + halo] = class[0][r * w + c] as u8;
            }
        }
        let want = params.filter(&ClassBlock {
            width: bw,
            height: bh,
            values,
        });
        let (got, _, _) = read_all(&smoothed.join("mosaic_class.vrt"));
        let mut changed = 0;
        for i in 0..w * h {
            assert_eq!(
                got[0][i],
                u16::from(want.values[i]),
                "mosaic pixel ({}, {})",
                i / w,
                i % w
            );
            changed += usize::from(got[0][i] != class[0][i]);
        }
        assert!(changed > 50, "the filter changed {changed} pixels");
        // Tiles filtered alone differ from the mosaic near their edges: the halo matters.
        let mut differ = 0;
        for t in &n.tiles {
            let (tile_class, tw, th) = read_all(&raw.join(format!("{}_class.tif", t.tile)));
            let (bw, bh) = (tw + 2 * halo, th + 2 * halo);
            let mut values = vec![CLASS_NODATA; bw * bh];
            for r in 0..th {
                for c in 0..tw {
                    values[(r + halo) * bw + c + halo] = tile_class[0][r * tw + c] as u8;
                }
            }
            let alone = params.filter(&ClassBlock {
                width: bw,
                height: bh,
                values,
            });
            let (tile_got, _, _) = read_all(&smoothed.join(format!("{}_class.tif", t.tile)));
            differ += (0..tw * th)
                .filter(|&i| u16::from(alone.values[i]) != tile_got[0][i])
                .count();
        }
        assert!(
            differ > 0,
            "the tiles filtered alone equal the mosaic's: the seam test cannot fail"
        );
        let (raw_prob, _, _) = read_all(&raw.join("mosaic_prob.vrt"));
        let (prob, _, _) = read_all(&smoothed.join("mosaic_prob.vrt"));
        assert_eq!(prob, raw_prob, "the probabilities stay predict's");
        if probabilities {
            let (before, after) = (accuracy(&n, &raw), accuracy(&n, &smoothed));
            eprintln!(
                "overall accuracy: {before:.4} without smoothing, {after:.4} with --smooth majority --smooth-window 5 --mmu 40"
            );
            assert!(after > before + 0.05, "majority: {before} -> {after}");
        }
        let ds = Dataset::open(smoothed.join(format!("{}_class.tif", n.tiles[0].tile))).unwrap();
        assert_eq!(
            ds.metadata_item(SMOOTHING_METADATA_KEY, "").as_deref(),
            Some("majority window=5 mmu=40")
        );
        let ds = Dataset::open(smoothed.join(format!("{}_prob.tif", n.tiles[0].tile))).unwrap();
        assert_eq!(ds.metadata_item(SMOOTHING_METADATA_KEY, ""), None);
    }
}
