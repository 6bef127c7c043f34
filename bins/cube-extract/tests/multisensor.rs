//! `cube-extract` on cubes that mix Landsat and Sentinel-2 (one series on their common bands, from
//! `--bands` or a model's contract) and on Level-2 COGs as FORCE ≥ 3.9 writes them. Every value is
//! checked against the files, read here with GDAL and this file's own table of FORCE's band order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gdal::{Dataset, Metadata};
use treesits_core::chunk::{read_chunks, ChunkColumns, ChunkMetadata};
use treesits_core::grid::PrjForm;
use treesits_core::{Date, Level2Name, Product, QaiScreen, Sensor};
use treesits_gdal::ForceLayout;
use treesits_testkit::cli::{s, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("cube-extract", env!("CARGO_BIN_EXE_cube-extract"));

const COMMON: &str = "BLUE,GREEN,RED,NIR,SWIR1,SWIR2";
const FOUR: &str = "SEN2A,SEN2B,LND08,LND09";

/// FORCE's BOA band order (docs/formats.md), written out here independently of the code under test:
/// the 1-based band numbers of BLUE, GREEN, RED, NIR, SWIR1, SWIR2. Sentinel-2's BOA has BLUE GREEN
/// RED REDEDGE1 REDEDGE2 REDEDGE3 BROADNIR (B08) NIR (B8A) SWIR1 SWIR2; Landsat's just the six.
fn common_band_numbers(sensor: Sensor) -> [usize; 6] {
    if sensor.name().starts_with("SEN2") {
        [1, 2, 3, 8, 9, 10]
    } else {
        [1, 2, 3, 4, 5, 6]
    }
}

/// One observation: (days since epoch, sensor code, band values).
type Obs = (i32, u8, Vec<i16>);
/// Pixel (row, col) → its observations, in chunk order.
type Series = BTreeMap<(u32, u32), Vec<Obs>>;

struct Cube {
    _dir: tempfile::TempDir,
    root: PathBuf,
    tile_dir: PathBuf,
    size: usize,
}

fn synth_in(dir: &Path, layout: ForceLayout, size: usize, dates: usize, sensors: &[Sensor]) -> PathBuf {
    let cfg = SynthConfig {
        out: dir.to_path_buf(),
        seed: 11,
        tiles: 1,
        tile_pixels: size,
        dates,
        year: 2021,
        sensors: sensors.to_vec(),
        layout,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    dir.join("cube").join(m.tiles[0].tile_id.to_string())
}

fn synth(layout: ForceLayout, size: usize, dates: usize, sensors: &[Sensor]) -> Cube {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth");
    let tile_dir = synth_in(&root, layout, size, dates, sensors);
    Cube {
        _dir: dir,
        root,
        tile_dir,
        size,
    }
}

/// Sentinel-2 A and B and Landsat 8 and 9 taking turns over 16 dates, 48 × 48 pixels: the generator
/// puts a Landsat and a Sentinel-2 acquisition on the same day twice.
fn mixed_cube() -> Cube {
    synth(
        ForceLayout::Force38,
        48,
        16,
        &[Sensor::Sen2a, Sensor::Lnd08, Sensor::Sen2b, Sensor::Lnd09],
    )
}

fn read_band(path: &Path, band: usize) -> Vec<i16> {
    let ds = Dataset::open(path).unwrap();
    let (c, r) = ds.raster_size();
    ds.rasterband(band)
        .unwrap()
        .read_as::<i16>((0, 0), (c, r), (c, r), None)
        .unwrap()
        .into_shape_and_vec()
        .1
}

/// Every acquisition of the tile with the common bands and the QAI, read with GDAL, sorted by
/// (date, sensor code).
#[allow(clippy::type_complexity)]
fn read_common(tile_dir: &Path) -> Vec<(Date, Sensor, Vec<Vec<i16>>, Vec<i16>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(tile_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let l2 = Level2Name::parse(&name).unwrap();
        if l2.product != Product::Boa {
            continue;
        }
        let boa = tile_dir.join(&name);
        let ds = Dataset::open(&boa).unwrap();
        let numbers = common_band_numbers(l2.sensor);
        // The files name their bands as FORCE does: the numbers above are the right ones.
        let names: Vec<String> = numbers
            .iter()
            .map(|&b| ds.rasterband(b).unwrap().description().unwrap())
            .collect();
        assert_eq!(names.join(","), COMMON, "{name}");
        let bands = numbers.iter().map(|&b| read_band(&boa, b)).collect();
        let qai = read_band(&tile_dir.join(l2.with_product(Product::Qai).to_string()), 1);
        out.push((l2.date, l2.sensor, bands, qai));
    }
    out.sort_by_key(|a| (a.0, a.1.code()));
    out
}

/// What the chunks must hold: every pixel, with the observations the default screen keeps.
fn expected(tile_dir: &Path, size: usize, keep: &[Sensor]) -> Series {
    let screen = QaiScreen::force_default();
    let acqs: Vec<_> = read_common(tile_dir)
        .into_iter()
        .filter(|a| keep.contains(&a.1))
        .collect();
    let mut series = Series::new();
    for px in 0..size * size {
        let obs = series
            .entry(((px / size) as u32, (px % size) as u32))
            .or_default();
        for (date, sensor, bands, qai) in &acqs {
            if !screen.rejects(qai[px]) {
                obs.push((
                    date.days_since_epoch(),
                    sensor.code(),
                    bands.iter().map(|b| b[px]).collect(),
                ));
            }
        }
    }
    series
}

fn read_dir_chunks(dir: &Path) -> (Vec<ChunkMetadata>, Series) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut metas = Vec::new();
    let mut series = Series::new();
    for p in names {
        let (meta, batches) = read_chunks(std::fs::File::open(&p).unwrap()).unwrap();
        for c in &batches {
            add_series(&mut series, c);
        }
        metas.push(meta);
    }
    (metas, series)
}

fn add_series(s: &mut Series, c: &ChunkColumns) {
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

fn extract(cube: &Cube, name: &str, extra: &[&str]) -> (Vec<ChunkMetadata>, Series) {
    let out = cube.root.join(name);
    let mut args = vec!["--tile", s(&cube.tile_dir), "--out-dir", s(&out), "-q"];
    args.extend(extra);
    TOOL.ok(&TOOL.run(&args));
    read_dir_chunks(&out)
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/testdata")
        .join(name)
}

fn sensor_set(meta: &ChunkMetadata) -> BTreeSet<Sensor> {
    meta.sensors.iter().copied().collect()
}

#[test]
fn landsat_and_sentinel2_make_one_series_on_their_common_bands() {
    let cube = mixed_cube();
    // The cube holds what the test is about: both families, and same-day pairs across them.
    let acqs = read_common(&cube.tile_dir);
    let sensors: BTreeSet<Sensor> = acqs.iter().map(|a| a.1).collect();
    assert_eq!(sensors.len(), 4);
    let same_day: Vec<(Date, Sensor, Sensor)> = acqs
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| (w[0].0, w[0].1, w[1].1))
        .collect();
    assert!(
        same_day
            .iter()
            .any(|(_, a, b)| a.name().starts_with("SEN2") != b.name().starts_with("SEN2")),
        "a Landsat and a Sentinel-2 acquisition on one day: {same_day:?}"
    );

    let (metas, got) = extract(
        &cube,
        "chunks",
        &["--sensors", FOUR, "--bands", COMMON, "--chunk-rows", "20"],
    );
    assert_eq!(metas.len(), 3);
    for m in &metas {
        assert_eq!(m.band_names.join(","), COMMON);
        assert_eq!(sensor_set(m), sensors);
        assert_eq!((m.scale, m.nodata), (10_000.0, -9999));
    }
    let want = expected(
        &cube.tile_dir,
        cube.size,
        &[Sensor::Sen2a, Sensor::Sen2b, Sensor::Lnd08, Sensor::Lnd09],
    );
    assert_eq!(got.len(), cube.size * cube.size);
    assert_eq!(
        got, want,
        "every observation's date, sensor and six values as in the files"
    );

    // Order (date, sensor code); a same-day pair of two sensors stays two observations.
    let mut pairs = 0;
    for obs in got.values() {
        for w in obs.windows(2) {
            assert!((w[0].0, w[0].1) < (w[1].0, w[1].1));
            pairs += usize::from(w[0].0 == w[1].0);
        }
    }
    assert!(pairs > cube.size, "same-day observations of two sensors: {pairs}");
    let total: usize = got.values().map(Vec::len).sum();
    let landsat: usize = got
        .values()
        .flatten()
        .filter(|o| Sensor::from_code(o.1).unwrap().name().starts_with("LND"))
        .count();
    assert!(landsat > 0 && landsat < total, "{landsat} of {total}");

    // Bands in any order and any subset: each sensor's own band of each name.
    let (metas, nir_blue) = extract(
        &cube,
        "nir_blue",
        &[
            "--sensors",
            "LND09,SEN2B",
            "--bands",
            "nir,BLUE",
            "--chunk-rows",
            "48",
        ],
    );
    assert_eq!(metas[0].band_names, ["NIR", "BLUE"]);
    let want = expected(&cube.tile_dir, cube.size, &[Sensor::Sen2b, Sensor::Lnd09]);
    let want: Series = want
        .into_iter()
        .map(|(px, obs)| {
            (
                px,
                obs.into_iter()
                    .map(|(d, s, v)| (d, s, vec![v[3], v[0]]))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(nir_blue, want);
}

#[test]
fn a_six_band_model_contract_chooses_the_bands_and_the_sensors() {
    let cube = mixed_cube();
    let model = testdata("common6.onnx");
    // No --sensors: the contract's sensors (all four); its bands, in its order.
    let (metas, by_model) = extract(&cube, "model", &["--model", s(&model)]);
    assert_eq!(metas[0].band_names.join(","), COMMON);
    let want = expected(
        &cube.tile_dir,
        cube.size,
        &[Sensor::Sen2a, Sensor::Sen2b, Sensor::Lnd08, Sensor::Lnd09],
    );
    assert_eq!(by_model, want);
    // The contract as a .json file gives the same; a subset of its sensors is fine.
    let json = testdata("common6.contract.json");
    let (_, by_json) = extract(&cube, "json", &["--model", s(&json), "--sensors", "LND08"]);
    assert_eq!(by_json, expected(&cube.tile_dir, cube.size, &[Sensor::Lnd08]));
    // A contract without sensors (any sensor with its bands): its five bands from Sentinel-2 only.
    let (metas, _) = extract(&cube, "linear", &["--model", s(&testdata("linear_left.onnx"))]);
    assert_eq!(metas[0].band_names, ["NIR", "RED", "REDEDGE1", "GREEN", "SWIR1"]);
    let recorded = sensor_set(&metas[0]);
    assert!(
        recorded.is_superset(&[Sensor::Sen2a, Sensor::Sen2b].into()),
        "{recorded:?}"
    );
    assert!(recorded.iter().all(|s| s.is_sentinel2()), "{recorded:?}");
}

/// Runs cube-extract expecting failure: exit status 1, one error line holding every needle, and no
/// output directory left.
fn fails(cube: &Cube, extra: &[&str], needles: &[&str]) {
    let out = cube.root.join("failed");
    let mut args = vec!["--tile", s(&cube.tile_dir), "--out-dir", s(&out)];
    args.extend(extra);
    let r = TOOL.run(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{extra:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{extra:?}: one line expected: {err}");
    assert!(lines[0].starts_with("cube-extract: error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{n}' not in: {}", lines[0]);
    }
    assert!(!out.exists(), "{extra:?} left {}", out.display());
}

#[test]
fn sensors_without_a_requested_band_are_refused_naming_the_fix() {
    let cube = mixed_cube();
    // Mixing band sets without --bands: the existing error, now naming the fix.
    fails(
        &cube,
        &["--sensors", "SEN2A,LND08"],
        &[
            "--sensors SEN2A,LND08",
            "LND08 has 6 bands",
            "--bands BLUE,GREEN,RED,NIR,SWIR1,SWIR2",
        ],
    );
    fails(
        &cube,
        &["--sensors", FOUR, "--bands", "BLUE,REDEDGE1"],
        &["--bands: LND08 has no band REDEDGE1 (only SEN2A,SEN2B have it)"],
    );
    fails(
        &cube,
        &["--sensors", "SEN2A,LND08", "--bands", "BLUE,B8A"],
        &[
            "'B8A' is not a FORCE BOA band name",
            "BLUE,GREEN,RED,NIR,SWIR1,SWIR2",
        ],
    );
    fails(&cube, &["--bands", "NIR,Nir"], &["band 'NIR' is listed twice"]);
    // A contract that lists its sensors refuses others.
    let model = testdata("common6.onnx");
    fails(
        &cube,
        &["--model", s(&model), "--sensors", "SEN2A,LND07"],
        &[
            "--sensors SEN2A,LND07",
            "test-common6 accepts only SEN2A,SEN2B,LND08,LND09",
            "not LND07",
        ],
    );
    // A model whose bands Landsat lacks.
    fails(
        &cube,
        &[
            "--model",
            s(&testdata("linear_left.onnx")),
            "--sensors",
            "SEN2A,LND08",
        ],
        &["LND08 has no band REDEDGE1"],
    );
    fails(
        &cube,
        &["--model", s(&testdata("no_contract.onnx"))],
        &["no_contract.onnx", "carries no contract", "--bands"],
    );
    let not_onnx = cube.root.join("manifest.json");
    fails(
        &cube,
        &["--model", s(&not_onnx)],
        &["manifest.json", "model contract"],
    );
    let missing = cube.root.join("nope.onnx");
    fails(&cube, &["--model", s(&missing)], &["--model", "nope.onnx"]);
    // --bands and --model together: a usage error (exit 2).
    let r = TOOL.run(&[
        "--tile",
        s(&cube.tile_dir),
        "--out",
        "-",
        "--bands",
        COMMON,
        "--model",
        s(&model),
    ]);
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn cog_level2_files_are_read_exactly_and_never_from_an_overview() {
    let dir = tempfile::tempdir().unwrap();
    let sensors = [Sensor::Sen2a, Sensor::Lnd08];
    // 300 pixels: more than one 256-pixel block each way, and one overview level.
    let gtiff = synth_in(&dir.path().join("gtiff"), ForceLayout::Force38, 300, 5, &sensors);
    let cog = synth_in(&dir.path().join("cog"), ForceLayout::Force39, 300, 5, &sensors);

    let mut names: Vec<String> = std::fs::read_dir(&cog)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        10,
        "BOA and QAI of five acquisitions, nothing else: {names:?}"
    );
    let mut differs_from_overview = false;
    for n in &names {
        let ds = Dataset::open(cog.join(n)).unwrap();
        assert_eq!(
            ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
            Some("COG"),
            "{n}"
        );
        assert_eq!(
            ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE").as_deref(),
            Some("ZSTD"),
            "{n}"
        );
        let band = ds.rasterband(1).unwrap();
        assert_eq!(band.block_size(), (256, 256), "{n}");
        assert_eq!(band.overview_count().unwrap(), 1, "{n}");
        // Same values as the tiled GeoTIFF of the same world, band by band.
        for b in 1..=ds.raster_count() {
            assert_eq!(
                read_band(&cog.join(n), b),
                read_band(&gtiff.join(n), b),
                "{n} band {b}"
            );
        }
        if n.ends_with("_BOA.tif") {
            let full = read_band(&cog.join(n), 1);
            let ov = band.overview(0).unwrap();
            let (oc, or) = ov.size();
            assert_eq!((oc, or), (150, 150));
            let small = ov.read_as::<i16>((0, 0), (oc, or), (oc, or), None).unwrap();
            let small = small.into_shape_and_vec().1;
            differs_from_overview |=
                (0..oc * or).any(|i| small[i] != full[(i / oc) * 2 * 300 + (i % oc) * 2]);
        }
    }
    assert!(
        differs_from_overview,
        "the overview must differ, or the test could not tell"
    );

    let run = |tile: &Path, out: &Path, extra: &[&str]| -> Series {
        let mut args = vec!["--tile", s(tile), "--out-dir", s(out), "--sensors", "SEN2A,LND08"];
        args.extend(["--bands", COMMON, "-q"]);
        args.extend(extra);
        TOOL.ok(&TOOL.run(&args));
        let (metas, series) = read_dir_chunks(out);
        // Chunks follow the files' blocks: 256 rows, then the rest.
        let rows: Vec<usize> = metas.iter().map(|m| m.window.rows).collect();
        assert_eq!(rows, [256, 44]);
        series
    };
    let from_cog = run(&cog, &dir.path().join("chunks_cog"), &[]);
    let from_gtiff = run(&gtiff, &dir.path().join("chunks_gtiff"), &[]);
    assert_eq!(
        from_cog,
        expected(&cog, 300, &sensors),
        "exact values from the COGs"
    );
    assert_eq!(from_cog, from_gtiff);
    // COGs of GDAL < 3.11 interleave by pixel and are read acquisition by acquisition (every band in
    // a row); groups of any size give the same chunks.
    let interleave = Dataset::open(cog.join(&names[0]))
        .unwrap()
        .metadata_item("INTERLEAVE", "IMAGE_STRUCTURE");
    assert!(
        matches!(interleave.as_deref(), Some("PIXEL" | "TILE" | "BAND")),
        "{interleave:?}"
    );
    for bytes in ["1", "200000"] {
        let out = dir.path().join(format!("chunks_cog_{bytes}"));
        assert_eq!(
            run(&cog, &out, &["--group-bytes", bytes, "--threads", "2"]),
            from_cog,
            "{bytes}"
        );
    }
}

/// ENVI Level-2 files (`…_BOA.dat` + `.hdr`) are not read: the error names them and the fix, and the
/// fix (GeoTIFF copies with the same names, as docs/formats.md says) gives the same chunks.
#[test]
fn envi_level2_files_are_refused_with_the_conversion_that_makes_them_readable() {
    let cube = synth(ForceLayout::Force38, 30, 4, &[Sensor::Sen2a, Sensor::Lnd08]);
    let tile = cube.tile_dir.file_name().unwrap().to_owned();
    let envi = cube.root.join("envi").join(&tile);
    std::fs::create_dir_all(&envi).unwrap();
    let names: Vec<String> = std::fs::read_dir(&cube.tile_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let driver = gdal::DriverManager::get_driver_by_name("ENVI").unwrap();
    for n in &names {
        let src = Dataset::open(cube.tile_dir.join(n)).unwrap();
        let dat = envi.join(n.replace(".tif", ".dat"));
        src.create_copy(&driver, &dat, &Default::default()).unwrap();
    }
    assert!(envi.join(names[0].replace(".tif", ".hdr")).exists());
    let out = cube.root.join("envi_chunks");
    let args = |tile: &Path| {
        vec![
            "--tile".to_string(),
            tile.display().to_string(),
            "--out-dir".into(),
            out.display().to_string(),
            "--sensors".into(),
            "SEN2A,LND08".into(),
            "--bands".into(),
            COMMON.into(),
            "-q".into(),
        ]
    };
    let r = TOOL.run(&args(&envi).iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("its Level-2 files are ENVI (2021"), "{err}");
    assert!(
        err.contains("_LEVEL2_") && err.contains(".dat), which is not read"),
        "{err}"
    );
    assert!(err.contains("gdal_translate -of GTiff"), "{err}");
    assert!(!out.exists());

    // The documented conversion: GeoTIFFs with the same stems (the ENVI files may stay).
    let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let options =
        gdal::raster::RasterCreationOptions::from_iter(["COMPRESS=ZSTD", "PREDICTOR=2", "TILED=YES"]);
    for n in &names {
        let src = Dataset::open(envi.join(n.replace(".tif", ".dat"))).unwrap();
        src.create_copy(&gtiff, envi.join(n), &options).unwrap();
    }
    TOOL.ok(&TOOL.run(&args(&envi).iter().map(String::as_str).collect::<Vec<_>>()));
    let (_, converted) = read_dir_chunks(&out);
    assert_eq!(
        converted,
        expected(&cube.tile_dir, cube.size, &[Sensor::Sen2a, Sensor::Lnd08])
    );
}
