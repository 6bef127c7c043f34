"""predict against Python onnxruntime, and why the QAI screen matters (issue 5's "Must show").

1. Numerical parity: on a synthetic cube of a seed the fixtures were not trained on, `predict
   --probabilities` stores round(p · 10000) for every class; Python onnxruntime, fed the same observations
   packed by `models/treesits_models/data.pack` (the reference packing), gives p. They must agree to within
   the storage step plus 1e-5: |stored/10000 − p| ≤ 0.5e-4 + 1e-5 for every pixel and class, with class =
   argmax and prob = max. Pixels without observations are class 255 / prob 65535.
2. A bidirectional LSTM (models/testdata/bilstm.onnx, which reads padding): at batch sizes 1, 7, 64 and
   4096 predict equals onnxruntime run pixel by pixel on each exact series (issue 21).
3. The same cube extracted with `--screen none`: the fixtures' accuracy falls markedly (clouds, shadows and
   nodata reach the model), while with the default screen it stays ≥ 0.90.

Run: PYTHONPATH=models python3 tests/predict/test_fixture_parity.py   (scripts/test runs it; binaries from
target/release), or install the package (`pip install -e models`) and drop PYTHONPATH.
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.ipc as ipc

# The treesits_models package (models/pyproject.toml): installed, or on PYTHONPATH as scripts/test sets it.
from treesits_models.contract import read_from_onnx
from treesits_models.data import find_binary, load_samples, make_synthetic, pack

REPO = Path(__file__).resolve().parents[2]

FIXTURES = [REPO / "models/fixtures/lstm.onnx", REPO / "models/fixtures/transformer.onnx"]
SEED = 11  # the fixtures were trained on seed 1 and evaluated on seed 2


def read_predictions(directory: Path) -> dict:
    rows, cols, cls, prob, probs = [], [], [], [], []
    for f in sorted(directory.glob("*.pred.arrows")):
        with open(f, "rb") as fh:
            t = ipc.open_stream(fh).read_all().combine_chunks()
        rows.append(t.column("row").to_numpy())
        cols.append(t.column("col").to_numpy())
        cls.append(t.column("class").to_numpy())
        prob.append(t.column("prob").to_numpy())
        if "probabilities" in t.column_names:
            pl = t.column("probabilities").chunk(0)
            probs.append(pl.values.to_numpy().reshape(len(t), pl.type.list_size))
    out = {"row": np.concatenate(rows), "col": np.concatenate(cols), "class": np.concatenate(cls),
           "prob": np.concatenate(prob)}
    if probs:
        out["probabilities"] = np.concatenate(probs)
    return out


def run_predict(model: Path, chunks: Path, out: Path, *extra: str) -> dict:
    subprocess.run([find_binary("predict"), "--model", str(model), "--input", str(chunks), "--out-dir", str(out),
                    "--device", "cpu", "-q", *extra], check=True)
    return read_predictions(out)


class FixtureParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="treesits-parity-")
        cls.run_dir = make_synthetic(Path(cls.tmp.name) / "run", seed=SEED, tiles=1, size=80, dates=24)
        cls.samples = load_samples(cls.run_dir)
        cls.tile = cls.samples.tiles[0]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_predict_equals_python_onnxruntime_on_the_same_packed_inputs(self):
        s = self.samples
        has_obs = s.n_obs > 0
        self.assertGreater(int(has_obs.sum()), 1000)
        for model in FIXTURES:
            with self.subTest(model=model.name):
                contract = read_from_onnx(model)
                got = run_predict(model, self.run_dir / "chunks" / self.tile, Path(self.tmp.name) / f"p-{model.stem}",
                                  "--probabilities", "--batch-size", "333")
                # predict keeps the chunk's pixel order; the samples are read in the same order.
                np.testing.assert_array_equal(got["row"], s.row)
                np.testing.assert_array_equal(got["col"], s.col)
                self.assertTrue(np.all(got["class"][~has_obs] == 255))
                self.assertTrue(np.all(got["prob"][~has_obs] == 65535))

                session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
                idx = np.flatnonzero(has_obs)
                values, doy, mask = pack(s, contract, idx)
                feeds = {contract["inputs"]["values"]: values}
                if contract["inputs"].get("doy"):
                    feeds[contract["inputs"]["doy"]] = doy
                if contract["inputs"].get("mask"):
                    feeds[contract["inputs"]["mask"]] = mask
                [p] = session.run([contract["output"]["name"]], feeds)
                codes = np.array([c["code"] for c in contract["classes"]], dtype=np.uint8)

                stored = got["probabilities"][idx].astype(np.float64) / 10000.0
                worst = float(np.abs(stored - p).max())
                self.assertLessEqual(worst, 0.5e-4 + 1e-5, f"{model.name}: largest difference {worst}")
                np.testing.assert_array_equal(got["class"][idx], codes[p.argmax(axis=1)])
                np.testing.assert_array_equal(got["prob"][idx], got["probabilities"][idx].max(axis=1))
                print(f"\n{model.name}: {len(idx)} pixels, largest |predict − onnxruntime| = {worst:.2e} "
                      f"(storage step 1e-4)", file=sys.stderr)

    def test_a_bidirectional_lstm_equals_its_per_pixel_reference_at_every_batch_size(self):
        """Issue 21: models/testdata/bilstm.onnx reads padding in both directions (its contract does not
        say it ignores padding), so predict must never pad it. Reference: onnxruntime run pixel by pixel,
        each on exactly its own (thinned) series — no padding, no batch-mates."""
        s = self.samples
        model = REPO / "models/testdata/bilstm.onnx"
        contract = read_from_onnx(model)
        self.assertFalse(contract["sequence"].get("ignores_padding", False))
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        name_in, name_out = contract["inputs"]["values"], contract["output"]["name"]
        idx = np.flatnonzero(s.n_obs > 0)
        ref = np.concatenate([session.run([name_out], {name_in: pack(s, contract, [i])[0]})[0] for i in idx])
        # The test has teeth: padded to the longest series of one big batch, the model answers otherwise.
        padded = session.run([name_out], {name_in: pack(s, contract, idx)[0]})[0]
        self.assertGreater(float(np.abs(padded - ref).max()), 1e-2, "the fixture must be padding-sensitive")
        codes = np.array([c["code"] for c in contract["classes"]], dtype=np.uint8)
        first = None
        for batch in (1, 7, 64, 4096):
            with self.subTest(batch_size=batch):
                got = run_predict(model, self.run_dir / "chunks" / self.tile,
                                  Path(self.tmp.name) / f"bilstm-{batch}", "--probabilities",
                                  "--batch-size", str(batch))
                stored = got["probabilities"][idx].astype(np.float64) / 10000.0
                worst = float(np.abs(stored - ref).max())
                self.assertLessEqual(worst, 0.5e-4 + 1e-5, f"batch {batch}: largest difference {worst}")
                np.testing.assert_array_equal(got["class"][idx], codes[ref.argmax(axis=1)])
                if first is None:
                    first = got
                else:
                    np.testing.assert_array_equal(got["class"], first["class"])
                    steps = np.abs(got["probabilities"].astype(np.int32) - first["probabilities"].astype(np.int32))
                    self.assertLessEqual(int(steps.max()), 1, f"batch {batch} vs 1")
                print(f"\nbilstm batch {batch}: {len(idx)} pixels, largest |predict − per-pixel onnxruntime| = "
                      f"{worst:.2e}", file=sys.stderr)

    def test_without_the_qai_screen_accuracy_falls_markedly(self):
        s = self.samples
        unscreened = Path(self.tmp.name) / "unscreened"
        subprocess.run([find_binary("cube-extract"), "--tile", str(self.run_dir / "synth/cube" / self.tile),
                        "--screen", "none", "--out-dir", str(unscreened), "-q"], check=True)
        truth = s.label
        for model in FIXTURES:
            with self.subTest(model=model.name):
                acc = {}
                for name, chunks in [("screened", self.run_dir / "chunks" / self.tile), ("none", unscreened)]:
                    got = run_predict(model, chunks, Path(self.tmp.name) / f"{name}-{model.stem}")
                    np.testing.assert_array_equal(got["row"], s.row)
                    valid = got["class"] != 255
                    acc[name] = float((got["class"][valid] == truth[valid]).mean())
                print(f"\n{model.name}: accuracy {acc['screened']:.3f} with the default screen, "
                      f"{acc['none']:.3f} with --screen none", file=sys.stderr)
                self.assertGreaterEqual(acc["screened"], 0.90)
                self.assertLess(acc["none"], acc["screened"] - 0.10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
