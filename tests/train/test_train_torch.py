"""Training from the table with torch: it learns, early stopping stops, the export reproduces torch,
and predict accepts a TempCNN trained here.

Skipped, saying so, where torch is not importable (CI's venv has no torch). Run them with the torch venv:
    ~/torch-venv/bin/python -m pytest tests/train
"""

import json
import subprocess

import numpy as np
import pyarrow.ipc as ipc
import pytest
from conftest import have_binaries, make_table

torch = pytest.importorskip("torch", reason="torch is not installed (CI's venv has none): training tests skipped")

from treesits_models import data, table  # noqa: E402
from treesits_models.architectures import WithSoftmax, build  # noqa: E402
from treesits_models.contract import read_from_onnx  # noqa: E402
from treesits_models.train_table import main as train_main  # noqa: E402


@pytest.fixture(scope="module")
def small_table(synthetic_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "samples.parquet"
    make_table(synthetic_run, path, plots=150, noise=0.02)
    return path


def train(table_path, out, *extra):
    assert train_main(["--table", str(table_path), "--out-dir", str(out), "--threads", "2", *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_a_small_lstm_learns_and_its_export_reproduces_torch(small_table, tmp_path):
    out = tmp_path / "lstm"
    r = train(small_table, out, "--arch", "lstm", "--epochs", "12", "--patience", "4", "--seed", "0")
    v = r["validation"]
    # 11 classes: chance is below 0.3 whatever the class mix; the model must be far above it
    biggest = max(c["reference_samples"] for c in v["per_class"]) / v["samples"]
    assert v["overall_accuracy"] > max(0.6, biggest + 0.2), v
    assert v["samples"] == sum(map(sum, v["confusion_matrix"])) == r["split"]["validation"]
    assert r["split"]["grouped_by"] == "plots"
    for c in v["per_class"]:
        if c["precision"] is not None and c["recall"] is not None and c["precision"] + c["recall"] > 0:
            assert c["f1"] == pytest.approx(2 * c["precision"] * c["recall"] / (c["precision"] + c["recall"]))
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Confusion matrix" in (out / "report.md").read_text()

    # the ONNX file carries the contract (equal to the JSON copy), with the table's bands and classes
    contract = read_from_onnx(out / "lstm.onnx")
    assert contract == json.loads((out / "lstm.contract.json").read_text())
    s = table.read_table(small_table)
    assert contract["bands"] == s.bands and contract["classes"] == s.classes
    # scaling from the training observations only
    tr, _, _ = table.blocked_split(s.x, s.y, s.plot_id, 1000.0, 0.2, 0, r["split"]["buffer_m"])
    mean, _ = data.band_statistics(s.subset(tr))
    np.testing.assert_allclose(contract["scaling"]["mean"], mean)

    # onnxruntime on the table's series, packed as predict packs them, equals torch on the saved weights
    import onnxruntime as ort

    ckpt = torch.load(out / "lstm.pt")
    model = build("lstm", **ckpt["hparams"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    values, _, _ = data.pack(s, contract)
    with torch.no_grad():
        ref = WithSoftmax(model)(torch.from_numpy(values)).numpy()
    got = ort.InferenceSession(str(out / "lstm.onnx"), providers=["CPUExecutionProvider"]).run(
        ["probabilities"], {"values": values})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_early_stopping_stops_and_keeps_the_best_epoch(small_table, tmp_path):
    r = train(small_table, tmp_path / "es", "--arch", "lstm", "--epochs", "40", "--patience", "2", "--lr", "2e-2")
    h = r["history"]
    assert r["stopped_early"] and len(h) < 40
    assert len(h) == r["best_epoch"] + 2
    best = min(e["val_loss"] for e in h)
    assert h[r["best_epoch"] - 1]["val_loss"] == best
    assert all(e["val_loss"] >= best for e in h[r["best_epoch"]:])


def test_a_tempcnn_exports_and_predict_accepts_it(synthetic_run, small_table, tmp_path):
    missing = have_binaries("predict")
    if missing:
        pytest.skip(missing)
    out = tmp_path / "tempcnn"
    r = train(small_table, out, "--arch", "tempcnn", "--epochs", "6", "--patience", "3")
    assert r["validation"]["overall_accuracy"] > 0.5
    model = out / "tempcnn.onnx"
    contract = read_from_onnx(model)
    assert contract["sequence"]["max_length"] == 48 and contract["sequence"]["padding"] == "right"
    chunk_dir = sorted((synthetic_run / "chunks").iterdir())[0]
    pred = tmp_path / "pred"
    subprocess.run([data.find_binary("predict"), "--model", str(model), "--input", str(chunk_dir), "--out-dir",
                    str(pred), "--device", "cpu", "-q"], check=True)
    [f] = sorted(pred.glob("*.pred.arrows"))
    with open(f, "rb") as fh:
        t = ipc.open_stream(fh).read_all().combine_chunks()
    # predict's classes equal onnxruntime's on the same series packed by data.pack
    import onnxruntime as ort

    tile = chunk_dir.name
    s = data.load_samples(synthetic_run)
    idx = np.flatnonzero((np.array(s.tiles)[s.tile] == tile) & (s.n_obs > 0))
    np.testing.assert_array_equal(t.column("row").to_numpy()[t.column("class").to_numpy() != 255], s.row[idx])
    values, doy, mask = data.pack(s, contract, idx)
    p = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        ["probabilities"], {"values": values, "doy": doy, "mask": mask})[0]
    codes = np.array([c["code"] for c in contract["classes"]])
    got = t.column("class").to_numpy()
    np.testing.assert_array_equal(got[got != 255], codes[p.argmax(1)])
