"""The training table `sample-extract` writes, read as training reads it: pyarrow and pandas.

A small synthetic cube (treesits-synth), points in EPSG:4326 (GeoJSON) on pixel centres of its first
tile, labels as names; the table's columns, Arrow types and file metadata must be those of
docs/formats.md ("Training table"), and the values those cube-extract gives the same pixels.

Binaries: $TREESITS_BIN_DIR, else target/release, else target/debug.
"""

import json
import subprocess

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

TOOLS = ["treesits-synth", "cube-extract", "sample-extract"]
BANDS = ["BLUE", "GREEN", "RED", "REDEDGE1", "REDEDGE2", "REDEDGE3", "BROADNIR", "NIR", "SWIR1", "SWIR2"]


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{cmd[0]}: {r.stderr}"
    return r


@pytest.fixture(scope="module")
def table(tmp_path_factory, treesits_bins):
    b = treesits_bins(*TOOLS)
    tmp = tmp_path_factory.mktemp("samples")
    synth = tmp / "synth"
    run(b / "treesits-synth", "--out", synth, "--tiles", 1, "--size", 40, "--dates", 6, "--seed", 5,
        "--sensors", "SEN2A,SEN2B", "-q")
    tile = sorted(p for p in (synth / "cube").iterdir() if p.is_dir())[0]
    boa = sorted(tile.glob("*_BOA.tif"))[0]
    pixels = [(3, 4, "spruce"), (10, 20, "beech"), (33, 7, "oak")]
    # Pixel centres (col + 0.5, row + 0.5) to longitude/latitude through the file's georeferencing.
    lonlat = subprocess.run(["gdaltransform", "-t_srs", "EPSG:4326", str(boa)], capture_output=True,
                            text=True, check=True,
                            input="".join(f"{c + 0.5} {r + 0.5}\n" for r, c, _ in pixels)).stdout.split("\n")
    features = []
    for (row, col, name), line in zip(pixels, lonlat):
        lon, lat = (float(v) for v in line.split()[:2])
        features.append({"type": "Feature", "properties": {"species": name, "w": 0.5, "yr": 2021},
                         "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    samples = tmp / "samples.geojson"
    samples.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp / "train.parquet"
    run(b / "sample-extract", "--cube", synth / "cube", "--samples", samples, "--label", "species",
        "--weight", "w", "--year", "yr", "--out", out, "-q")
    chunks = tmp / "chunks"
    run(b / "cube-extract", "--tile", tile, "--out-dir", chunks, "-q")
    return out, pixels, tile.name, sorted(chunks.glob("*.arrows"))


def test_columns_and_types_are_the_contract(table):
    out, _, _, _ = table
    schema = pq.read_schema(out)
    list_of = pa.list_
    want = [("sample_id", pa.int64()), ("label", pa.int32()), ("label_name", pa.string()),
            ("weight", pa.float64()), ("year", pa.int32()), ("tile_id", pa.string()),
            ("row", pa.uint32()), ("col", pa.uint32()), ("x", pa.float64()), ("y", pa.float64()),
            ("n_obs", pa.uint32()), ("date", list_of(pa.field("item", pa.date32(), nullable=False))),
            ("sensor", list_of(pa.field("item", pa.uint8(), nullable=False)))]
    want += [(b, list_of(pa.field("item", pa.int16(), nullable=False))) for b in BANDS]
    assert [(f.name, f.type) for f in schema] == want
    assert "plot_id" not in schema.names, "plot_id only with --plot-id"


def test_file_metadata_names_the_inputs(table):
    out, _, _, _ = table
    meta = {k.decode(): v.decode() for k, v in pq.read_metadata(out).metadata.items()
            if k.startswith(b"treesits.")}
    assert meta["treesits.format"] == "treesits-training-table"
    assert meta["treesits.format_version"] == "1"
    assert meta["treesits.band_names"] == ",".join(BANDS)
    assert meta["treesits.sensors"] == "SEN2A=0,SEN2B=1"
    assert meta["treesits.scale"] == "10000"
    assert meta["treesits.label_field"] == "species"
    assert meta["treesits.samples"].endswith("samples.geojson")
    classes = json.loads(meta["treesits.classes"])
    assert {"code": 6, "name": "beech"}.items() <= classes[6].items()
    for k in ("cube", "crs_wkt", "nodata", "date_start", "date_end", "qai_screen", "software_version"):
        assert meta[f"treesits.{k}"], k


def test_rows_are_the_series_cube_extract_gives_the_pixels(table):
    out, pixels, tile, chunk_files = table
    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: r["sample_id"])
    assert [r["sample_id"] for r in rows] == [0, 1, 2]
    assert [r["label_name"] for r in rows] == [p[2] for p in pixels]
    assert [r["label"] for r in rows] == [0, 6, 4]
    assert [(r["weight"], r["year"], r["tile_id"]) for r in rows] == [(0.5, 2021, tile)] * 3
    series = {}
    for f in chunk_files:
        for r in pa.ipc.open_stream(f.read_bytes()).read_all().to_pylist():
            series[(r["row"], r["col"])] = r
    for r, (row, col, _) in zip(rows, pixels):
        assert (r["row"], r["col"]) == (row, col)
        want = series[(row, col)]
        for c in ["date", "sensor"] + BANDS:
            assert r[c] == want[c], c
        assert r["n_obs"] == len(want["date"]) > 0


def test_pandas_reads_the_table(table):
    pytest.importorskip("pandas")
    out, pixels, _, _ = table
    df = pq.read_table(out).to_pandas().sort_values("sample_id")
    assert list(df["label_name"]) == [p[2] for p in pixels]
    assert all(len(d) == n for d, n in zip(df["date"], df["n_obs"]))
