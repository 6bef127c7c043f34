"""The STAC Item `mosaic` writes, from the real binaries on a small synthetic cube.

treesits-synth makes a cube of SEN2A and SEN2B only; cube-extract runs with its default sensors
(SEN2A,SEN2B,SEN2C), predict with a tiny test model, mosaic with a reprojected web mosaic. The Item is
validated with jsonschema against the schemas in tests/map/schemas/ (core Item and every extension it
names), its checksums and sizes are checked against the files, and the provenance keys are read back
with gdalinfo from every product.

Binaries: $TREESITS_BIN_DIR, else target/release (scripts/test builds it before running this), else
target/debug. predict needs ORT_DYLIB_PATH (source scripts/env.sh).
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
MODEL = ROOT / "models" / "testdata" / "linear_left.onnx"
TOOLS = ["treesits-synth", "cube-extract", "predict", "mosaic"]
# The extension schema URLs the Item may name, and the local schema written for each.
EXTENSION_SCHEMAS = {
    "https://stac-extensions.github.io/file/v2.1.0/schema.json": "file.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "raster.json",
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json": "classification.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json": "projection.json",
    "https://stac-extensions.github.io/mlm/v1.4.0/schema.json": "mlm.json",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{cmd[0]}: {r.stderr}"
    return r


def gdal_metadata(path):
    info = json.loads(run("gdalinfo", "-json", path).stdout)
    return info["metadata"][""]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, treesits_bins):
    b = treesits_bins(*TOOLS)
    if not os.environ.get("ORT_DYLIB_PATH"):
        pytest.skip("ORT_DYLIB_PATH is not set: source scripts/env.sh")
    tmp = tmp_path_factory.mktemp("stac")
    synth = tmp / "synth"
    run(b / "treesits-synth", "--out", synth, "--tiles", 2, "--size", 40, "--dates", 8, "--seed", 3,
        "--sensors", "SEN2A,SEN2B", "-q")
    tiles = sorted(p for p in (synth / "cube").iterdir() if p.is_dir())
    for t in tiles:
        run(b / "cube-extract", "--tile", t, "--out-dir", tmp / "chunks", "-q")
    run(b / "predict", "--model", MODEL, "--input", tmp / "chunks", "--out-dir", tmp / "predictions",
        "--uncertainty", "margin", "-q")
    out = tmp / "map"
    run(b / "mosaic", "--input", tmp / "predictions", "--out-dir", out, "--t-srs", 3857, "-q")
    item = json.loads((out / "mosaic.stac.json").read_text())
    return out, item, [t.name for t in tiles]


def schema(name):
    return json.loads((SCHEMAS / name).read_text())


def test_the_item_is_valid_against_the_core_and_every_extension_schema_it_names(mapped):
    _, item, _ = mapped
    jsonschema.Draft202012Validator.check_schema(schema("item.json"))
    jsonschema.validate(item, schema("item.json"), cls=jsonschema.Draft202012Validator)
    named = item["stac_extensions"]
    assert set(EXTENSION_SCHEMAS) <= set(named), named
    for url in named:
        assert url in EXTENSION_SCHEMAS, f"no local schema for {url}"
        s = schema(EXTENSION_SCHEMAS[url])
        jsonschema.Draft202012Validator.check_schema(s)
        jsonschema.validate(item, s, cls=jsonschema.Draft202012Validator)


def test_the_schemas_refuse_what_the_specs_forbid(mapped):
    """The schemas can fail: an Item broken in the ways the specs name is refused."""
    _, item, _ = mapped
    v = lambda name: jsonschema.Draft202012Validator(schema(name))  # noqa: E731
    broken = json.loads(json.dumps(item))
    del broken["properties"]["start_datetime"]
    assert not v("item.json").is_valid(broken)
    broken = json.loads(json.dumps(item))
    broken["assets"]["mosaic_class.tif"]["classification:classes"][0]["color_hint"] = "#1f5e31"
    assert not v("classification.json").is_valid(broken)
    broken = json.loads(json.dumps(item))
    broken["assets"]["mosaic_prob.tif"]["raster:bands"][0]["data_type"] = "UInt16"
    assert not v("raster.json").is_valid(broken)
    broken = json.loads(json.dumps(item))
    del broken["properties"]["mlm:architecture"]
    assert not v("mlm.json").is_valid(broken)
    broken = json.loads(json.dumps(item))
    broken["properties"]["mlm:input"][0]["input"]["shape"][0] = 0
    assert not v("mlm.json").is_valid(broken)
    broken = json.loads(json.dumps(item))
    broken["assets"]["mosaic_class.tif"]["file:size"] = -1
    assert not v("file.json").is_valid(broken)


def test_every_mosaic_file_is_an_asset_with_its_size_and_sha256(mapped):
    out, item, _ = mapped
    assets = item["assets"]
    files = sorted(p.name for p in out.iterdir() if p.name.startswith("mosaic_") or p.name == "quicklook.png")
    assert "mosaic_class_epsg3857.tif" in files and "mosaic_class.tif.aux.xml" in files
    assert sorted(k for k in assets if k != "model") == files
    for name in files:
        a = assets[name]
        assert a["href"] == f"./{name}"
        data = (out / a["href"]).read_bytes()
        assert a["file:size"] == len(data), name
        assert a["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest(), name
        if name.endswith(".tif"):
            assert a["type"] == COG
            assert "data" in a["roles"]
    (band,) = assets["mosaic_class.tif"]["raster:bands"]
    assert (band["data_type"], band["nodata"]) == ("uint8", 255)
    assert assets["mosaic_uncertainty.tif"]["raster:bands"][0]["data_type"] == "uint16"
    assert assets["quicklook.png"]["type"] == "image/png"
    assert assets["mosaic_class_epsg3857.tif"]["proj:epsg"] == 3857


def test_the_classes_and_the_model_come_from_the_contract(mapped):
    out, item, _ = mapped
    contract = json.loads(MODEL.with_suffix(".contract.json").read_text())
    classes = item["assets"]["mosaic_class.tif"]["classification:classes"]
    assert [c["value"] for c in classes] == [c["code"] for c in contract["classes"]]
    assert [c["description"] for c in classes] == [c["name"] for c in contract["classes"]]
    assert [c["color_hint"] for c in classes] == ["%02X%02X%02X" % tuple(c["colour"]) for c in contract["classes"]]
    p = item["properties"]
    assert p["mlm:name"] == contract["model_id"]
    assert p["mlm:tasks"] == ["classification"] and p["mlm:framework"] == "ONNX"
    (inp,) = p["mlm:input"]
    assert inp["bands"] == contract["bands"]
    assert len(inp["input"]["shape"]) == len(inp["input"]["dim_order"])
    assert [s["mean"] for s in inp["value_scaling"]] == contract["scaling"]["mean"]
    (outp,) = p["mlm:output"]
    assert outp["result"]["shape"] == [-1, len(contract["classes"])]
    models = [a for a in item["assets"].values() if "mlm:model" in a["roles"]]
    assert len(models) == 1
    assert models[0]["href"] == MODEL.name
    assert models[0]["file:checksum"] == "1220" + hashlib.sha256(MODEL.read_bytes()).hexdigest()


def test_dates_footprint_and_sensors_describe_what_was_read(mapped):
    out, item, tiles = mapped
    p = item["properties"]
    assert p["datetime"] is None
    dates = gdal_metadata(out / "mosaic_class.tif")["TREESITS_DATES"].split("/")
    assert p["start_datetime"] == f"{dates[0]}T00:00:00Z" and p["end_datetime"] == f"{dates[1]}T23:59:59Z"
    # The cube has SEN2A and SEN2B; cube-extract was asked for SEN2C too.
    assert p["treesits:sensors"] == ["SEN2A", "SEN2B"]
    west, south, east, north = item["bbox"]
    for name in tiles:
        info = json.loads(run("gdalinfo", "-json", out / f"{name}_class.tif").stdout)
        lon, lat = info["wgs84Extent"]["coordinates"][0][0]
        assert west - 1e-6 <= lon <= east + 1e-6 and south - 1e-6 <= lat <= north + 1e-6, (lon, lat, item["bbox"])
    assert item["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_every_product_carries_the_provenance_keys_with_the_sensors_used(mapped):
    out, item, tiles = mapped
    sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    products = [out / f"{t}_{p}.tif" for t in tiles for p in ("class", "prob", "uncertainty")]
    products += [out / n for n in ("mosaic_class.vrt", "mosaic_prob.vrt", "mosaic_class.tif", "mosaic_prob.tif",
                                   "mosaic_uncertainty.tif", "mosaic_class_epsg3857.tif", "mosaic_prob_epsg3857.tif")]
    for path in products:
        md = gdal_metadata(path)
        assert md["TREESITS_SENSORS"] == "SEN2A,SEN2B", path.name
        assert md["TREESITS_MODEL_SHA256"] == sha, path.name
        assert md["TREESITS_MODEL_ID"] == "test-linear-left", path.name
        assert md["TREESITS_VERSION"] == item["properties"]["treesits:version"], path.name
        assert md["TREESITS_QAI_SCREEN"], path.name
        assert len(md["TREESITS_DATES"].split("/")) == 2, path.name
