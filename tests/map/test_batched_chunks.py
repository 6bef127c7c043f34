"""Chunks cut into several record batches (a memory budget smaller than a chunk) make the same map.

cube-extract writes a chunk whose observations exceed its batch limit as several record batches, one
per column range of the chunk's rows: 256-px blocks of tiled files, 64-column ranges of strips (whose
values go through a spill file). Downstream, predict writes one prediction batch per input batch and
mosaic places pixels by row and column. This runs the real binaries twice on the same synthetic cube,
once with whole chunks and once with `--batch-bytes` small enough to cut every chunk, for both file
layouts, and requires the same predictions pixel for pixel and byte-identical class and probability
rasters.

Binaries: $TREESITS_BIN_DIR, else target/release, else target/debug. predict needs ORT_DYLIB_PATH.
"""

import os
import subprocess
import tempfile
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "fixtures" / "lstm.onnx"
TOOLS = ["treesits-synth", "cube-extract", "predict", "mosaic"]


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{cmd[0]}: {r.stderr}"
    return r


def batches(path):
    return list(ipc.open_stream(open(path, "rb")))


def predictions(folder):
    """(row, col) → (class, prob) of every prediction file in `folder`."""
    out = {}
    for f in sorted(folder.glob("*.pred.arrows")):
        for b in batches(f):
            d = b.to_pydict()
            for r, c, k, p in zip(d["row"], d["col"], d["class"], d["prob"]):
                assert (r, c) not in out, f"{f.name}: pixel ({r}, {c}) twice"
                out[(r, c)] = (k, p)
    return out


def raster_bytes(path):
    """The pixel values of a raster (through gdal_translate to raw ENVI; no GDAL Python bindings)."""
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "r.bin"
        run("gdal_translate", "-q", "-of", "ENVI", path, raw)
        return raw.read_bytes()


@pytest.mark.parametrize("layout,size", [("force37", 300), ("force38", 600)])
def test_a_chunk_cut_into_batches_maps_exactly_as_a_whole_one(tmp_path, treesits_bins, layout, size):
    b = treesits_bins(*TOOLS)
    if not os.environ.get("ORT_DYLIB_PATH"):
        pytest.skip("ORT_DYLIB_PATH is not set: source scripts/env.sh")
    synth = tmp_path / "synth"
    run(b / "treesits-synth", "--out", synth, "--tiles", 1, "--size", size, "--dates", 10, "--seed", 5,
        "--layout", layout, "-q")
    [tile] = sorted(p for p in (synth / "cube").iterdir() if p.is_dir())
    maps = {}
    for name, extra in [("whole", []), ("cut", ["--batch-bytes", "200000"])]:
        chunks, pred, out = tmp_path / f"chunks-{name}", tmp_path / f"pred-{name}", tmp_path / f"map-{name}"
        run(b / "cube-extract", "--tile", tile, "--out-dir", chunks, "--threads", 2, "-q", *extra)
        counts = [len(batches(f)) for f in sorted(chunks.glob("*.arrows"))]
        if name == "whole":
            assert set(counts) == {1}, counts
        else:
            # Strips: 64-column ranges (5 of 300 columns); tiles: 256-px blocks (3 of 600).
            assert min(counts) >= 2, counts
        run(b / "predict", "--model", MODEL, "--input", chunks, "--out-dir", pred, "--device", "cpu",
            "--threads", 2, "-q")
        for f in sorted(pred.glob("*.pred.arrows")):
            src = chunks / f.name.replace(".pred.arrows", ".arrows")
            assert len(batches(f)) == len(batches(src)), f"{f.name}: one prediction batch per input batch"
        run(b / "mosaic", "--input", pred, "--out-dir", out, "-q")
        maps[name] = (predictions(pred), out)
    whole, cut = maps["whole"][0], maps["cut"][0]
    assert len(whole) == size * size
    assert cut == whole
    assert sum(1 for k, _ in whole.values() if k != 255) > 0.9 * size * size
    for product in ("mosaic_class.tif", "mosaic_prob.tif"):
        assert raster_bytes(maps["cut"][1] / product) == raster_bytes(maps["whole"][1] / product), product
