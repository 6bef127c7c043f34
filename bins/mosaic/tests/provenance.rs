//! Provenance in every product and the STAC Item: each per-tile GeoTIFF, mosaic VRT, COG and
//! reprojected COG carries the model id and SHA-256, the treesits version, the date range, the
//! sensors read (the tile's own; for a mosaic the union over its tiles) and the QAI screen, as GDAL
//! reads them; `mosaic.stac.json` lists every mosaic file with its size and checksum.

use std::collections::BTreeMap;
use std::path::Path;

use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, Metadata};
use serde_json::Value;
use treesits_core::contract::ModelContract;
use treesits_core::inventory::{sha256_hex, sha256_reader};
use treesits_core::{Date, Sensor, TileGrid};
use treesits_testkit::cli::{s, Tool};
use treesits_testkit::predictions::{tile_predictions, PredictionSpec};
use treesits_testkit::SynthConfig;

const TOOL: Tool = Tool::new("mosaic", env!("CARGO_BIN_EXE_mosaic"));
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn metadata(path: &Path) -> BTreeMap<String, String> {
    let ds = Dataset::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ds.metadata().map(|e| (e.key, e.value)).collect()
}

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

#[test]
fn every_product_names_what_it_was_made_from_and_the_stac_item_lists_the_mosaics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: dir.path().join("synth"),
        seed: 5,
        tiles: 2,
        tile_pixels: 40,
        dates: 1,
        ..Default::default()
    };
    let spec = PredictionSpec {
        chunk_rows: 16,
        ..Default::default()
    };
    let contract =
        ModelContract::from_json(include_str!("../../../models/testdata/linear_left.contract.json")).unwrap();
    let mut tiles: Vec<_> = cfg
        .tile_ids()
        .into_iter()
        .map(|t| tile_predictions(&cfg, t, &spec))
        .collect();
    // Tile 0 was read from SEN2B acquisitions only, tile 1 from both (in the order of the request).
    let dated = [
        (vec![Sensor::Sen2b], "2021-03-02", "2021-09-01"),
        (vec![Sensor::Sen2b, Sensor::Sen2a], "2021-01-10", "2021-10-20"),
    ];
    let chunks = dir.path().join("chunks");
    for (t, (sensors, start, end)) in tiles.iter_mut().zip(&dated) {
        t.meta.source.sensors = sensors.clone();
        t.meta.source.date_start = date(start);
        t.meta.source.date_end = date(end);
        t.meta.model_contract = Some(ModelContract {
            classes: t.meta.classes.clone(),
            ..contract.clone()
        });
        t.write_chunk_files(&chunks).unwrap();
    }
    let sha = sha256_hex(spec.model_id.as_bytes());
    let out = dir.path().join("map");
    let r = TOOL.run(&[
        "--input",
        s(&chunks),
        "--out-dir",
        s(&out),
        "--t-srs",
        "3857",
        "-q",
    ]);
    TOOL.ok(&r);

    let want = |sensors: &str, dates: &str| {
        BTreeMap::from([
            ("TREESITS_MODEL_ID", spec.model_id.clone()),
            ("TREESITS_MODEL_SHA256", sha.clone()),
            ("TREESITS_VERSION", VERSION.to_string()),
            ("TREESITS_DATES", dates.to_string()),
            ("TREESITS_SENSORS", sensors.to_string()),
            (
                "TREESITS_QAI_SCREEN",
                "nodata,cloud,shadow,snow,subzero,saturation".to_string(),
            ),
        ])
    };
    let check = |path: &Path, want: &BTreeMap<&str, String>| {
        let got = metadata(path);
        for (k, v) in want {
            assert_eq!(got.get(*k), Some(v), "{}: {k} in {got:?}", path.display());
        }
    };
    for (t, (_, start, end)) in tiles.iter().zip(&dated) {
        let sensors = t
            .meta
            .source
            .sensors
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(",");
        for product in ["class", "prob", "probabilities", "uncertainty"] {
            let path = out.join(format!("{}_{product}.tif", t.tile));
            check(&path, &want(&sensors, &format!("{start}/{end}")));
        }
    }
    // The mosaics: the union of the sensors (SEN2A first, by code), the overall date range.
    let mosaic = want("SEN2A,SEN2B", "2021-01-10/2021-10-20");
    let mosaics = [
        "mosaic_class.vrt",
        "mosaic_prob.vrt",
        "mosaic_uncertainty.vrt",
        "mosaic_probabilities.vrt",
        "mosaic_class.tif",
        "mosaic_prob.tif",
        "mosaic_uncertainty.tif",
        "mosaic_class_epsg3857.tif",
        "mosaic_prob_epsg3857.tif",
    ];
    for name in mosaics {
        check(&out.join(name), &mosaic);
    }

    // The STAC Item.
    let item: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mosaic.stac.json")).unwrap()).unwrap();
    assert_eq!(item["type"], "Feature");
    let p = &item["properties"];
    assert_eq!(p["datetime"], Value::Null);
    assert_eq!(p["start_datetime"], "2021-01-10T00:00:00Z");
    assert_eq!(p["end_datetime"], "2021-10-20T23:59:59Z");
    assert_eq!(p["treesits:sensors"], serde_json::json!(["SEN2A", "SEN2B"]));
    assert_eq!(p["mlm:name"], contract.model_id);
    assert_eq!(p["mlm:framework"], "ONNX");
    assert_eq!(p["mlm:input"][0]["bands"], serde_json::json!(contract.bands));
    assert_eq!(p["proj:shape"], serde_json::json!([40, 80]));
    let assets = item["assets"].as_object().unwrap();
    for name in mosaics.iter().copied().chain(["quicklook.png"]) {
        let a = &assets[name];
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(a["href"], format!("./{name}"));
        assert_eq!(a["file:size"], bytes.len() as u64, "{name}");
        assert_eq!(
            a["file:checksum"],
            format!("1220{}", sha256_reader(bytes.as_slice()).unwrap()),
            "{name}"
        );
    }
    assert_eq!(
        assets["mosaic_class.tif"]["type"],
        "image/tiff; application=geotiff; profile=cloud-optimized"
    );
    let classes = assets["mosaic_class.tif"]["classification:classes"]
        .as_array()
        .unwrap();
    assert_eq!(classes.len(), tiles[0].meta.classes.len());
    assert_eq!(classes[2]["name"], "douglas-fir");
    assert_eq!(
        assets["mosaic_class.tif"]["raster:bands"][0]["data_type"],
        "uint8"
    );
    let bands = assets["mosaic_prob.tif"]["raster:bands"].as_array().unwrap();
    assert_eq!(bands[0]["data_type"], "uint16");
    assert_eq!(bands[0]["nodata"], 65535.0);
    assert_eq!(assets["mosaic_class_epsg3857.tif"]["proj:epsg"], 3857);
    assert_eq!(assets["model"]["file:checksum"], format!("1220{sha}"));
    // The footprint holds every tile's centre, in longitude/latitude.
    let grid = TileGrid::new(cfg.cube_definition(), cfg.resolution).unwrap();
    let mut src = SpatialRef::from_wkt(&grid.definition.projection_wkt).unwrap();
    src.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut wgs84 = SpatialRef::from_epsg(4326).unwrap();
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&src, &wgs84).unwrap();
    let bbox: Vec<f64> = serde_json::from_value(item["bbox"].clone()).unwrap();
    for t in &tiles {
        let (x, y) = grid.pixel_centre(t.tile, 20, 20);
        let (mut xs, mut ys, mut zs) = ([x], [y], [0.0]);
        ct.transform_coords(&mut xs, &mut ys, &mut zs).unwrap();
        assert!(
            bbox[0] < xs[0] && xs[0] < bbox[2] && bbox[1] < ys[0] && ys[0] < bbox[3],
            "{bbox:?} {xs:?} {ys:?}"
        );
    }
}
