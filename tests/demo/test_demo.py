"""scripts/demo end to end: the README's first command after setup.

The accuracy test needs the trained LSTM fixture (models/fixtures/lstm.onnx) and skips, saying so,
while it is absent; the others run the demo with a tiny untrained test model to check its plumbing.
Run by scripts/test after the release build (the demo runs target/release/*).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo"
LSTM = ROOT / "models" / "fixtures" / "lstm.onnx"
TEST_MODEL = ROOT / "models" / "testdata" / "linear_left.onnx"
SMALL = ["--tiles", "2", "--size", "100", "--dates", "24", "--seed", "7"]


def demo(*args, path=None):
    env = dict(os.environ, PATH=path) if path else None
    return subprocess.run([sys.executable, str(DEMO), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=900, env=env)


def test_the_demo_maps_the_synthetic_cube_with_accuracy_of_at_least_090(tmp_path):
    if not LSTM.is_file():
        pytest.skip("models/fixtures/lstm.onnx is not in the repository yet: the demo's accuracy "
                    "cannot be checked without the trained model")
    out = tmp_path / "demo"
    r = demo("--out", out, *SMALL)
    assert r.returncode == 0, r.stderr
    census = json.loads((out / "accuracy" / "accuracy.json").read_text())
    assert census["reference_kind"] == "raster"
    assert census["samples"] == sum(map(sum, census["confusion_matrix"]))
    assert census["samples"] > 1000
    assert census["overall_accuracy"] >= 0.90, census["overall_accuracy"]
    # What the demo prints is what the report says.
    assert f"overall accuracy {census['overall_accuracy']:.3f}" in r.stdout
    # The stratified sample's area-adjusted estimate agrees with the census within its uncertainty.
    sample = json.loads((out / "accuracy-sample" / "accuracy.json").read_text())
    est = sample["area_adjusted"]["overall_accuracy"]
    assert abs(est["estimate"] - census["overall_accuracy"]) <= 2 * est["ci95"] + 0.02, (est, census["overall_accuracy"])


def test_the_demo_runs_every_step_and_writes_its_reports(tmp_path):
    out = tmp_path / "demo"
    r = demo("--out", out, *SMALL, "--model", TEST_MODEL, "--sample-per-class", "20")
    assert r.returncode == 0, r.stderr
    for step in range(1, 9):
        assert f"[{step}/8]" in r.stderr, r.stderr
    assert (out / "map" / "quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    census = json.loads((out / "accuracy" / "accuracy.json").read_text())
    sample = json.loads((out / "accuracy-sample" / "accuracy.json").read_text())
    # Every mapped pixel of the clipped mosaic is compared with the truth ...
    assert census["samples"] + census["dropped"]["reference_nodata"] == census["area_adjusted"]["mapped_pixels_total"]
    # ... and the sample holds up to 20 points of each mapped class, all on mapped pixels.
    mapped = [c for c in sample["area_adjusted"]["per_class"] if c["mapped_pixels"] > 0]
    per_stratum = [sum(row[i] for row in sample["confusion_matrix"]) for i, c in enumerate(sample["area_adjusted"]["per_class"]) if c["mapped_pixels"] > 0]
    assert all(n == min(20, c["mapped_pixels"]) for n, c in zip(per_stratum, mapped)), per_stratum
    assert sample["dropped"] == {"outside_map": 0, "map_nodata": 0, "reference_nodata": 0, "ignored": 0}
    assert str(out / "map" / "mosaic_class.tif") in r.stdout
    # Running it again replaces the earlier demo.
    again = demo("--out", out, *SMALL, "--model", TEST_MODEL, "--sample-per-class", "0")
    assert again.returncode == 0, again.stderr
    assert not (out / "accuracy-sample").exists()


def test_the_demo_refuses_foreign_directories_and_missing_models(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    r = demo("--out", foreign, "--model", TEST_MODEL)
    assert r.returncode == 1
    assert "is not empty and was not written by the demo" in r.stderr
    assert (foreign / "thesis.tex").exists()
    r = demo("--out", tmp_path / "d", "--model", tmp_path / "none.onnx")
    assert r.returncode == 1
    assert "none.onnx not found" in r.stderr
    r = demo("--out", tmp_path / "nf", "--model", TEST_MODEL, "--nextflow", path="/usr/bin:/bin")
    if shutil.which("nextflow", path="/usr/bin:/bin") is None:
        assert r.returncode == 1
        assert "--nextflow: nextflow is not on PATH" in r.stderr
    r = demo("--size", "0")
    assert r.returncode == 2
    assert "--size must be at least 1" in r.stderr
