//! `sample-extract` run as a program on synthetic cubes in both file layouts: every written sample's
//! series equals the series `cube-extract` gives its pixel, and every other sample is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int16Type, Int32Type, Int64Type, UInt32Type, UInt8Type};
use arrow_array::{Array, RecordBatch};
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::Dataset;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use treesits_core::chunk::read_chunks;
use treesits_core::grid::PrjForm;
use treesits_core::{Level2Name, Product, QaiScreen, Sensor, TileId};
use treesits_cube::extract::ExtractPlan;
use treesits_cube::extract_request::ExtractRequest;
use treesits_gdal::ForceLayout;
use treesits_testkit::cli::{assert_snapshot, s, stderr, Tool};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("sample-extract", env!("CARGO_BIN_EXE_sample-extract"));

/// One observation: (days since epoch, sensor code, band values).
type Obs = (i32, u8, Vec<i16>);
/// (tile, row, col) → its series.
type Series = BTreeMap<(String, u32, u32), Vec<Obs>>;

const SCREEN: &str = "nodata,cloud,shadow,snow,subzero,saturation";

struct Cube {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cube: PathBuf,
    tiles: Vec<TileId>,
}

fn synth(layout: ForceLayout, size: usize) -> Cube {
    synth_with(layout, size, &[Sensor::Sen2a, Sensor::Sen2b])
}

fn synth_with(layout: ForceLayout, size: usize, sensors: &[Sensor]) -> Cube {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 11,
        tiles: 2,
        tile_pixels: size,
        dates: 6,
        year: 2021,
        sensors: sensors.to_vec(),
        layout,
        prj_form: PrjForm::Tagged,
        resolution: 10.0,
        force: false,
    };
    let m = treesits_testkit::generate(&cfg).unwrap();
    let root = dir.path().join("synth");
    Cube {
        _dir: dir,
        cube: root.join("cube"),
        root,
        tiles: m.tiles.iter().map(|t| t.tile_id).collect(),
    }
}

fn tile_files(cube: &Cube, tile: TileId, product: Product) -> Vec<PathBuf> {
    let dir = cube.cube.join(tile.to_string());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            Level2Name::parse(p.file_name().unwrap().to_str().unwrap()).is_ok_and(|n| n.product == product)
        })
        .collect();
    v.sort();
    v
}

fn qai_at(path: &Path, row: usize, col: usize) -> i16 {
    let ds = Dataset::open(path).unwrap();
    let v = ds
        .rasterband(1)
        .unwrap()
        .read_as::<i16>((col as isize, row as isize), (1, 1), (1, 1), None)
        .unwrap();
    v.data()[0]
}

/// Marks pixel (row, col) of every QAI file of `tile` as nodata (bit 0), so no observation is valid.
fn make_nodata(cube: &Cube, tile: TileId, row: usize, col: usize) {
    for p in tile_files(cube, tile, Product::Qai) {
        let ds = Dataset::open_ex(
            &p,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE,
                ..Default::default()
            },
        )
        .unwrap();
        let mut b = ds.rasterband(1).unwrap();
        b.write(
            (col as isize, row as isize),
            (1, 1),
            &mut gdal::raster::Buffer::new((1, 1), vec![1i16]),
        )
        .unwrap();
    }
}

/// A pixel of `tile` where the screen rejects some but not all observations (clouds etc.).
fn partly_screened_pixel(cube: &Cube, tile: TileId, size: usize) -> (usize, usize) {
    let screen: QaiScreen = SCREEN.parse().unwrap();
    let qai = tile_files(cube, tile, Product::Qai);
    for row in (35..size).step_by(2) {
        for col in (3..size).step_by(5) {
            let rejected = qai.iter().filter(|p| screen.rejects(qai_at(p, row, col))).count();
            if rejected > 0 && rejected < qai.len() {
                return (row, col);
            }
        }
    }
    panic!("no partly screened pixel in the synthetic tile");
}

/// cube-extract's series of every pixel of the cube's tiles: its request and plan (what the
/// cube-extract binary runs), writing chunk files that are read back with `treesits_core::chunk`.
fn cube_extract_series(cube: &Cube) -> Series {
    cube_extract_series_with(cube, None, None)
}

/// [`cube_extract_series`] with `--sensors` and `--bands`.
fn cube_extract_series_with(cube: &Cube, sensors: Option<&str>, bands: Option<&str>) -> Series {
    let mut series = Series::new();
    for &tile in &cube.tiles {
        let out = cube.root.join(format!("chunks-{tile}"));
        let req = ExtractRequest {
            tile: s(&cube.cube.join(tile.to_string())).to_string(),
            mask: None,
            start: None,
            end: None,
            sensors: sensors.map(str::to_string),
            bands: bands.map(str::to_string),
            model: None,
            screen: SCREEN.to_string(),
            chunk_rows: None,
            max_open_datasets: treesits_cube::scan::MAX_OPEN_DATASETS,
            zstd_level: treesits_core::chunk::DEFAULT_ZSTD_LEVEL,
            group_bytes: None,
            batch_bytes: None,
            memory: treesits_core::memory::MemoryBudget::choose(None),
        };
        ExtractPlan::prepare(&req)
            .unwrap()
            .write_dir(&out, &|_, _, _| {})
            .unwrap();
        for e in std::fs::read_dir(&out).unwrap() {
            let (_, batches) = read_chunks(std::fs::File::open(e.unwrap().path()).unwrap()).unwrap();
            for c in batches {
                for i in 0..c.pixels() {
                    let obs = c
                        .range(i)
                        .map(|j| (c.date[j], c.sensor[j], c.bands.iter().map(|b| b[j]).collect()))
                        .collect();
                    series.insert((tile.to_string(), c.row[i], c.col[i]), obs);
                }
            }
        }
    }
    series
}

/// Map coordinates of a pixel's centre (plus an offset in pixels) as (lon, lat).
struct Geo {
    gt: [f64; 6],
    to_wgs84: CoordTransform,
}

impl Geo {
    fn new(cube: &Cube, tile: TileId) -> Geo {
        let ds = Dataset::open(&tile_files(cube, tile, Product::Boa)[0]).unwrap();
        let mut cube_srs = SpatialRef::from_wkt(&ds.projection()).unwrap();
        cube_srs.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
        let mut wgs84 = SpatialRef::from_epsg(4326).unwrap();
        wgs84.set_axis_mapping_strategy(gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder);
        Geo {
            gt: ds.geo_transform().unwrap(),
            to_wgs84: CoordTransform::new(&cube_srs, &wgs84).unwrap(),
        }
    }

    /// (lon, lat) of pixel position (row, col) given in fractional pixels.
    fn lonlat(&self, row: f64, col: f64) -> (f64, f64) {
        let mut x = [self.gt[0] + col * self.gt[1]];
        let mut y = [self.gt[3] + row * self.gt[5]];
        self.to_wgs84.transform_coords(&mut x, &mut y, &mut []).unwrap();
        (x[0], y[0])
    }

    fn point(&self, row: usize, col: usize, dx: f64) -> String {
        let (lon, lat) = self.lonlat(row as f64 + 0.5 + dx, col as f64 + 0.5 + dx);
        format!(r#"{{"type":"Point","coordinates":[{lon:.10},{lat:.10}]}}"#)
    }

    /// A rectangle covering the centres of rows r0..r1 and cols c0..c1 (exclusive ends).
    fn rect(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> String {
        let corners = [
            (r0 as f64 + 0.2, c0 as f64 + 0.2),
            (r0 as f64 + 0.2, c1 as f64 - 0.2),
            (r1 as f64 - 0.2, c1 as f64 - 0.2),
            (r1 as f64 - 0.2, c0 as f64 + 0.2),
            (r0 as f64 + 0.2, c0 as f64 + 0.2),
        ];
        let ring: Vec<String> = corners
            .iter()
            .map(|&(r, c)| {
                let (lon, lat) = self.lonlat(r, c);
                format!("[{lon:.10},{lat:.10}]")
            })
            .collect();
        format!(r#"{{"type":"Polygon","coordinates":[[{}]]}}"#, ring.join(","))
    }
}

/// The samples of a test: (geometry, label name, label code, plot id).
struct Layout {
    features: Vec<(String, Option<&'static str>, Option<i64>, &'static str)>,
    /// Pixels a point sample must land on: sample id → (tile, row, col).
    points: BTreeMap<i64, (String, u32, u32)>,
    /// Pixels of the polygon sample (id 6).
    polygon: Vec<(String, u32, u32)>,
}

fn samples(cube: &Cube, size: usize) -> Layout {
    let (t0, t1) = (cube.tiles[0], cube.tiles[1]);
    let g0 = Geo::new(cube, t0);
    let g1 = Geo::new(cube, t1);
    let cloud = partly_screened_pixel(cube, t0, size);
    make_nodata(cube, t0, 9, 12);
    let far = r#"{"type":"Point","coordinates":[-120.0,-45.0]}"#.to_string();
    // A pixel in the last block (tiled files: the south-east 256 px block).
    let last = (size - 3, size - 5);
    let features = vec![
        (g0.point(5, 7, 0.0), Some("spruce"), Some(0), "a"),
        (g0.point(cloud.0, cloud.1, 0.0), Some("beech"), Some(6), "b"),
        (g0.point(9, 12, 0.0), Some("pine"), Some(3), "c"),
        (far, Some("oak"), Some(4), "d"),
        (g0.point(5, 7, 0.3), Some("oak"), Some(4), "e"),
        (g0.point(30, 30, 0.0), None, None, "f"),
        (g0.rect(20, 23, 30, 33), Some("Douglas fir"), Some(2), "g"),
        (g0.point(last.0, last.1, 0.0), Some("silver fir"), Some(1), "h"),
        (g1.point(17, 4, 0.0), Some("sycamore"), Some(7), "i"),
    ];
    let p = |t: TileId, r: usize, c: usize| (t.to_string(), r as u32, c as u32);
    let points = BTreeMap::from([
        (0, p(t0, 5, 7)),
        (1, p(t0, cloud.0, cloud.1)),
        (7, p(t0, last.0, last.1)),
        (8, p(t1, 17, 4)),
    ]);
    let polygon = (20..23)
        .flat_map(|r| (30..33).map(move |c| (r, c)))
        .map(|(r, c)| p(t0, r, c))
        .collect();
    Layout {
        features,
        points,
        polygon,
    }
}

/// Writes the samples as GeoJSON (EPSG:4326), labels as names or as codes.
fn write_geojson(path: &Path, layout: &Layout, names: bool) {
    let features: Vec<String> = layout
        .features
        .iter()
        .map(|(geom, name, code, plot)| {
            let label = if names {
                name.map_or("null".to_string(), |n| format!("\"{n}\""))
            } else {
                code.map_or("null".to_string(), |c| c.to_string())
            };
            format!(
                r#"{{"type":"Feature","properties":{{"species":{label},"plot":"{plot}","w":1.5,"yr":2021}},"geometry":{geom}}}"#
            )
        })
        .collect();
    std::fs::write(
        path,
        format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            features.join(",")
        ),
    )
    .unwrap();
}

/// A row of the table: (sample_id, label, label_name, plot_id, tile, row, col, x, y, n_obs, series).
type Row = (
    i64,
    i32,
    String,
    Option<String>,
    String,
    u32,
    u32,
    f64,
    f64,
    u32,
    Vec<Obs>,
);

fn read_table(path: &Path) -> (Vec<Row>, arrow_schema::SchemaRef, BTreeMap<String, String>) {
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let kv: BTreeMap<String, String> = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    let schema = b.schema().clone();
    let reader = b.build().unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let bands: Vec<String> = schema.fields()[schema.index_of("sensor").unwrap() + 1..]
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for i in 0..batch.num_rows() {
            let list = |n: &str| col(n).as_list::<i32>().value(i);
            let dates = list("date");
            let dates = dates.as_primitive::<Date32Type>();
            let sensors = list("sensor");
            let sensors = sensors.as_primitive::<UInt8Type>();
            let band_values: Vec<_> = bands.iter().map(|b| list(b)).collect();
            let obs = (0..dates.len())
                .map(|j| {
                    (
                        dates.value(j),
                        sensors.value(j),
                        band_values
                            .iter()
                            .map(|v| v.as_primitive::<Int16Type>().value(j))
                            .collect(),
                    )
                })
                .collect();
            let plot = batch.column_by_name("plot_id").map(|c| {
                let c = c.as_string::<i32>();
                (!c.is_null(i)).then(|| c.value(i).to_string())
            });
            rows.push((
                col("sample_id").as_primitive::<Int64Type>().value(i),
                col("label").as_primitive::<Int32Type>().value(i),
                col("label_name").as_string::<i32>().value(i).to_string(),
                plot.flatten(),
                col("tile_id").as_string::<i32>().value(i).to_string(),
                col("row").as_primitive::<UInt32Type>().value(i),
                col("col").as_primitive::<UInt32Type>().value(i),
                col("x").as_primitive::<Float64Type>().value(i),
                col("y").as_primitive::<Float64Type>().value(i),
                col("n_obs").as_primitive::<UInt32Type>().value(i),
                obs,
            ));
        }
    }
    (rows, schema, kv)
}

fn run_layout(layout_kind: ForceLayout, size: usize) {
    let cube = synth(layout_kind, size);
    let layout = samples(&cube, size);
    let expected = cube_extract_series(&cube);
    for (names, polygons) in [(true, "all"), (false, "centre")] {
        let vector = cube
            .root
            .join(if names { "names.geojson" } else { "codes.geojson" });
        write_geojson(&vector, &layout, names);
        let out = cube.root.join("train.parquet");
        let report = cube.root.join("report.csv");
        let r = TOOL.run(&[
            "--cube",
            s(&cube.cube),
            "--samples",
            s(&vector),
            "--label",
            "species",
            "--plot-id",
            "plot",
            "--out",
            s(&out),
            "--report",
            s(&report),
            "--polygons",
            polygons,
            "--threads",
            "2",
        ]);
        TOOL.ok(&r);
        let (rows, schema, kv) = read_table(&out);
        // Every row: cube-extract's series of its pixel, exactly (values, dates, sensors, order).
        for row in &rows {
            let key = (row.4.clone(), row.5, row.6);
            let want = expected
                .get(&key)
                .unwrap_or_else(|| panic!("{key:?} not in cube-extract's output"));
            assert_eq!(&row.10, want, "sample {} at {key:?}", row.0);
            assert_eq!(row.9 as usize, want.len());
            assert!(!want.is_empty());
        }
        // Which samples are rows, and where.
        let mut got: BTreeMap<i64, Vec<(String, u32, u32)>> = BTreeMap::new();
        for row in &rows {
            got.entry(row.0).or_default().push((row.4.clone(), row.5, row.6));
        }
        let mut want: BTreeMap<i64, Vec<(String, u32, u32)>> = layout
            .points
            .iter()
            .map(|(id, p)| (*id, vec![p.clone()]))
            .collect();
        want.insert(
            6,
            if polygons == "all" {
                layout.polygon.clone()
            } else {
                vec![layout.polygon[4].clone()]
            },
        );
        for v in got.values_mut() {
            v.sort();
        }
        assert_eq!(got, want, "names: {names}, polygons: {polygons}");
        // The cloud pixel lost observations to the screen, but not all.
        let cloud = &rows.iter().find(|r| r.0 == 1).unwrap();
        assert!((cloud.9 as usize) < 12, "{}", cloud.9);
        // Labels and attributes.
        let by_id = |id: i64| rows.iter().find(|r| r.0 == id).unwrap();
        assert_eq!((by_id(0).1, by_id(0).2.as_str()), (0, "spruce"));
        assert_eq!((by_id(1).1, by_id(1).2.as_str()), (6, "beech"));
        assert_eq!((by_id(6).1, by_id(6).2.as_str()), (2, "Douglas fir"));
        assert_eq!(by_id(8).3.as_deref(), Some("i"));
        // x, y: the pixel centre in the cube's CRS.
        let g = Geo::new(&cube, cube.tiles[0]);
        let r0 = by_id(0);
        assert_eq!((r0.7, r0.8), (g.gt[0] + 75.0, g.gt[3] - 55.0));
        // The report: exactly the others.
        let text = std::fs::read_to_string(&report).unwrap();
        let t0 = cube.tiles[0].to_string();
        assert_eq!(
            text,
            format!(
                "sample_id,tile_id,row,col,reason\n2,{t0},9,12,no_valid_observation\n3,,,,off_cube\n\
                 4,{t0},5,7,duplicate_of:0\n5,,,,label_missing\n"
            ),
            "names: {names}"
        );
        let summary = stderr(&r);
        assert!(
            summary.contains("9 samples,")
                && summary.contains("1 off the cube")
                && summary.contains("1 without a valid observation")
                && summary.contains("1 duplicates"),
            "{summary}"
        );
        // Schema and file metadata as in docs/formats.md.
        let names_types: Vec<(String, String)> = schema
            .fields()
            .iter()
            .take(12)
            .map(|f| (f.name().clone(), format!("{}", f.data_type())))
            .collect();
        let want_types = [
            ("sample_id", "Int64"),
            ("plot_id", "Utf8"),
            ("label", "Int32"),
            ("label_name", "Utf8"),
            ("tile_id", "Utf8"),
            ("row", "UInt32"),
            ("col", "UInt32"),
            ("x", "Float64"),
            ("y", "Float64"),
            ("n_obs", "UInt32"),
        ];
        for (i, (n, t)) in want_types.iter().enumerate() {
            assert_eq!((names_types[i].0.as_str(), names_types[i].1.as_str()), (*n, *t));
        }
        assert_eq!(kv["treesits.format"], "treesits-training-table");
        assert_eq!(kv["treesits.format_version"], "1");
        assert_eq!(kv["treesits.label_field"], "species");
        assert_eq!(kv["treesits.sensors"], "SEN2A=0,SEN2B=1");
        // As chunks state it (the screen's canonical form).
        assert_eq!(
            kv["treesits.qai_screen"],
            SCREEN.parse::<QaiScreen>().unwrap().to_string()
        );
        assert_eq!(kv["treesits.scale"], "10000");
        assert!(
            kv["treesits.band_names"].starts_with("BLUE,GREEN,RED"),
            "{}",
            kv["treesits.band_names"]
        );
        let classes: serde_json::Value = serde_json::from_str(&kv["treesits.classes"]).unwrap();
        assert_eq!(classes[0]["name"], "spruce");
        assert!(kv["treesits.software_version"].starts_with("treesits "));
        // Nothing hidden left beside the table.
        let left: Vec<_> = std::fs::read_dir(&cube.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn strips_samples_are_cube_extracts_series_and_the_rest_is_reported() {
    run_layout(ForceLayout::Force37, 90);
}

#[test]
fn tiles_samples_are_cube_extracts_series_and_the_rest_is_reported() {
    run_layout(ForceLayout::Force38, 300);
}

#[test]
fn bad_input_is_one_line_naming_it() {
    let cube = synth(ForceLayout::Force37, 60);
    let layout = samples(&cube, 60);
    let vector = cube.root.join("s.geojson");
    write_geojson(&vector, &layout, true);
    let out = cube.root.join("t.parquet");
    // An existing table is replaced only by a complete new one.
    std::fs::write(&out, b"the previous table").unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec!["--cube", s(&cube.cube), "--samples", s(&vector), "--out", s(&out)];
        a.extend_from_slice(extra);
        TOOL.run(&a)
    };
    TOOL.fails_with(&run(&["--label", "nope"]), "--label nope: --samples");
    TOOL.fails_with(
        &run(&["--label", "species", "--classes", "/nonexistent.json"]),
        "--classes /nonexistent.json",
    );
    let classes = cube.root.join("classes.json");
    std::fs::write(&classes, r#"[{"code":0,"name":"spruce","colour":[1,2,3]}]"#).unwrap();
    TOOL.fails_with(
        &run(&["--label", "species", "--classes", s(&classes)]),
        "is not in the class table",
    );
    let far = cube.root.join("far.geojson");
    std::fs::write(
        &far,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"species":"oak"},"geometry":{"type":"Point","coordinates":[-120.0,-45.0]}}]}"#,
    )
    .unwrap();
    let r = TOOL.run(&[
        "--cube",
        s(&cube.cube),
        "--samples",
        s(&far),
        "--out",
        s(&out),
        "--label",
        "species",
    ]);
    TOOL.fails_with(&r, "none of its 1 samples lies on a tile");
    let r = TOOL.run(&[
        "--cube",
        s(&cube.cube),
        "--samples",
        "/no/such.gpkg",
        "--out",
        s(&out),
        "--label",
        "x",
    ]);
    TOOL.fails_with(&r, "cannot open --samples /no/such.gpkg");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"the previous table",
        "untouched by failed runs"
    );
    let hidden: Vec<_> = std::fs::read_dir(&cube.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

/// The interface as reviewed: a changed flag or help text changes tests/snapshots/help.txt.
#[test]
fn help_is_as_reviewed() {
    assert_snapshot(env!("CARGO_MANIFEST_DIR"), "help", &TOOL.help(&[]));
}

/// An `s3://` cube (GDAL's /vsis3/, moto) gives the same table as the same cube on disk.
#[test]
fn s3_cube_gives_the_same_table_as_local() {
    let cube = synth(ForceLayout::Force38, 60);
    let layout = samples(&cube, 60);
    let vector = cube.root.join("s.geojson");
    write_geojson(&vector, &layout, true);
    let moto = treesits_testkit::moto::Moto::start();
    moto.upload_dir(&cube.cube, "cube", "germany");
    let (local, remote) = (cube.root.join("local.parquet"), cube.root.join("remote.parquet"));
    TOOL.ok(&TOOL.run(&[
        "--cube",
        s(&cube.cube),
        "--samples",
        s(&vector),
        "--label",
        "species",
        "--out",
        s(&local),
    ]));
    let r = TOOL
        .command()
        .args([
            "--cube",
            "s3://cube/germany",
            "--samples",
            s(&vector),
            "--label",
            "species",
            "--out",
            s(&remote),
        ])
        .envs(moto.gdal_env())
        .output()
        .unwrap();
    TOOL.ok(&r);
    let (a, _, meta_a) = read_table(&local);
    let (b, _, meta_b) = read_table(&remote);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(meta_b["treesits.cube"], "s3://cube/germany");
    assert_eq!(meta_a["treesits.band_names"], meta_b["treesits.band_names"]);
}

/// `--sensors` and `--bands` mean what they mean for cube-extract (the shared request): Landsat and
/// Sentinel-2 in one series on their common bands, each sample's series cube-extract's.
#[test]
fn landsat_and_sentinel2_on_common_bands_are_cube_extracts_series() {
    const FOUR: &str = "SEN2A,SEN2B,LND08,LND09";
    const COMMON: &str = "BLUE,GREEN,RED,NIR,SWIR1,SWIR2";
    let cube = synth_with(
        ForceLayout::Force38,
        60,
        &[Sensor::Sen2a, Sensor::Lnd08, Sensor::Sen2b, Sensor::Lnd09],
    );
    let layout = samples(&cube, 60);
    let vector = cube.root.join("s.geojson");
    write_geojson(&vector, &layout, true);
    let flags = ["--sensors", FOUR, "--bands", COMMON];
    let expected = cube_extract_series_with(&cube, Some(FOUR), Some(COMMON));
    let out = cube.root.join("t.parquet");
    let mut args = vec![
        "--cube",
        s(&cube.cube),
        "--samples",
        s(&vector),
        "--label",
        "species",
        "--out",
        s(&out),
    ];
    args.extend_from_slice(&flags);
    TOOL.ok(&TOOL.run(&args));
    let (rows, schema, kv) = read_table(&out);
    let bands: Vec<&str> = schema.fields()[schema.index_of("sensor").unwrap() + 1..]
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(bands.join(","), COMMON);
    assert_eq!(kv["treesits.band_names"], COMMON);
    let code = |x: Sensor| x.code();
    assert_eq!(
        kv["treesits.sensors"],
        format!(
            "SEN2A=0,SEN2B=1,LND08={},LND09={}",
            code(Sensor::Lnd08),
            code(Sensor::Lnd09)
        )
    );
    assert!(!rows.is_empty());
    let mut landsat = 0;
    for row in &rows {
        let want = &expected[&(row.4.clone(), row.5, row.6)];
        assert_eq!(&row.10, want, "sample {}", row.0);
        landsat += row
            .10
            .iter()
            .filter(|o| o.1 == Sensor::Lnd08.code() || o.1 == Sensor::Lnd09.code())
            .count();
    }
    assert!(landsat > 0, "Landsat observations in the series");
    // The same mistakes as cube-extract's, with the same message.
    let mut bad = vec![
        "--cube",
        s(&cube.cube),
        "--samples",
        s(&vector),
        "--label",
        "species",
        "--out",
        s(&out),
    ];
    bad.extend_from_slice(&["--sensors", FOUR]);
    TOOL.fails_with(&TOOL.run(&bad), "--bands BLUE,GREEN,RED,NIR,SWIR1,SWIR2");
}
