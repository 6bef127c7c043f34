"""Checks that need PyTorch (run by hand with the torch venv; CI runs `check_fixtures.py` instead).

    cd models && /path/to/torch-venv/bin/treesits-torch-checks [--work ../out/models-train]
    (or /path/to/torch-venv/bin/python torch_checks.py from models/)

1. Export of freshly initialised models (LSTM uni- and bidirectional, Transformer): onnxruntime == torch
   on batches of several B and T (done inside `export`), contract in the metadata.
2. Conversion: the trained checkpoints that `train.py` leaves in `--work` are re-saved the way
   SITS-NN saves them — a state_dict under upstream parameter names with upstream's `*_params.json`, and
   a pickled module whose class (`sits_classifier.models.…`) cannot be imported — then converted with
   `convert.py`; the converted ONNX must reproduce the committed fixture's probabilities on held-out
   pixels to 1e-5.
Prints one line per check; exit status 1 on the first failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from . import convert, data
from .architectures import build
from .contract import SENTINEL2_BANDS, TRUTH_CLASSES, make_contract, read_from_onnx
from .export import export

# models/fixtures, next to the package in the repository
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"

# ours → upstream, the inverse of convert.UPSTREAM_NAME_MAP
TO_UPSTREAM = {"lstm": [("embedding.", "embd."), ("head.", "fc.")],
               "transformer": [("embedding.", "src_embd."), ("encoder.", "transformer_encoder."), ("head.", "fc.")]}


def upstream_state(arch: str, state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for ours, theirs in TO_UPSTREAM[arch]:
            if k.startswith(ours):
                k = theirs + k[len(ours):]
        out["module." + k] = v  # as saved from an nn.DataParallel
    if arch == "transformer":
        out["module.PEinstance.pe"] = torch.zeros(5000, 32)  # upstream's table, dropped by convert
    return out


def upstream_params(arch: str, hp: dict) -> dict:
    if arch == "lstm":
        section = ("bi-lstm" if hp["bidirectional"] else "lstm") + " hyperparameters"
        return {"general hyperparameters": {"batch size": 256, "seed": 0},
                section: {"number of bands": hp["num_bands"], "embedding size": hp["embed_size"],
                          "hidden size": hp["hidden_size"], "number of layers": hp["num_layers"],
                          "number of classes": hp["num_classes"]}}
    return {"general hyperparameters": {"batch size": 256, "seed": 0},
            "transformer hyperparameters": {
                "number of bands": hp["num_bands"], "embedding size": hp["d_model"],
                "number of heads": hp["nhead"], "number of layers": hp["num_layers"],
                "feedforward dimension": hp["dim_feedforward"], "number of classes": hp["num_classes"]}}


def pickled_upstream_module(arch: str, model: nn.Module, path: Path) -> None:
    """torch.save(module) of a class living in `sits_classifier.models.<arch>`, which is then forgotten."""
    name = f"sits_classifier.models.{arch}"
    fake = types.ModuleType(name)
    cls = type("LSTMClassifier" if arch == "lstm" else "TransformerClassifier", (nn.Module,), {"__module__": name})
    fake.__dict__[cls.__name__] = cls
    parents = ["sits_classifier", "sits_classifier.models"]
    for parent in parents:
        sys.modules[parent] = types.ModuleType(parent)
    sys.modules[name] = fake
    try:
        m = cls()
        if arch == "lstm":
            m.embd, m.lstm, m.fc = model.embedding, model.lstm, model.head
        else:
            m.src_embd, m.transformer_encoder, m.fc = model.embedding, model.encoder, model.head
        torch.save(m, path)
    finally:
        for m in parents + [name]:
            del sys.modules[m]


def check_fresh_exports(tmp: Path) -> None:
    torch.manual_seed(3)
    for arch, hp in [("lstm", dict(bidirectional=False)), ("lstm", dict(bidirectional=True, num_layers=1)),
                     ("transformer", dict(d_model=16, nhead=2, num_layers=1))]:
        model = build(arch, num_bands=10, num_classes=11, **hp).eval()
        # BatchNorm with non-trivial statistics, so the check covers it
        model.head[2].running_mean.uniform_(-0.5, 0.5)
        model.head[2].running_var.uniform_(0.5, 2.0)
        contract = make_contract(model_id=f"check-{arch}", description="", bands=SENTINEL2_BANDS,
                                 mean=[0.1] * 10, std=[0.05] * 10, classes=TRUTH_CLASSES,
                                 max_length=64 if arch == "lstm" else 128,
                                 padding="left" if arch == "lstm" else "right",
                                 doy_dim=model.doy_dim if arch == "transformer" else None,
                                 use_mask=arch == "transformer")
        path = tmp / f"fresh-{arch}.onnx"
        worst = export(model, contract, path)
        assert read_from_onnx(path) == contract, "contract in metadata differs"
        print(f"ok: export {arch} {hp}: onnxruntime vs torch max |diff| {worst:.1e}")


def check_conversion(work: Path, tmp: Path, held_out: data.Samples) -> None:
    for arch in ["lstm", "transformer"]:
        ckpt = torch.load(work / f"{arch}.pt", map_location="cpu", weights_only=False)
        hp = ckpt["hparams"]
        model = build(arch, **hp)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        fixture = FIXTURES_DIR / f"{arch}.onnx"
        contract = read_from_onnx(fixture)
        s = contract["scaling"]
        idx = np.flatnonzero(held_out.n_obs >= 1)[:3000]
        packed = data.pack(held_out, contract, idx)
        names = [n for n in (contract["inputs"]["values"], contract["inputs"].get("doy"),
                             contract["inputs"].get("mask")) if n]
        feed = dict(zip(names, [packed[0]] + ([packed[1], packed[2]] if len(names) == 3 else [])))
        reference = ort.InferenceSession(str(fixture), providers=["CPUExecutionProvider"]).run(None, feed)[0]

        state_path, params_path, module_path = tmp / f"{arch}_upstream.pth", tmp / f"{arch}_params.json", \
            tmp / f"{arch}_module.pkl"
        torch.save(upstream_state(arch, model.state_dict()), state_path)
        params_path.write_text(json.dumps(upstream_params(arch, hp)))
        pickled_upstream_module(arch, model, module_path)
        common = ["--classes", "truth", "--scale", str(s["scale"]), "--mean", ",".join(map(str, s["mean"])),
                  "--std", ",".join(map(str, s["std"])), "--max-length", str(contract["sequence"]["max_length"])]
        for label, extra in [("state_dict + params.json", ["--checkpoint", str(state_path), "--hparams", str(params_path)]),
                             ("pickled module", ["--checkpoint", str(module_path)]
                              + (["--nhead", str(hp["nhead"])] if arch == "transformer" else []))]:
            out = tmp / f"{arch}_converted.onnx"
            rc = convert.main(extra + common + ["--out", str(out)])
            assert rc == 0, f"convert {arch} ({label}) failed"
            got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feed)[0]
            diff = float(np.abs(got - reference).max())
            assert diff < 1e-5, f"converted {arch} ({label}) differs from the fixture by {diff}"
            assert (got.argmax(1) == reference.argmax(1)).all()
            converted = read_from_onnx(out)
            assert converted["scaling"] == contract["scaling"] and converted["classes"] == contract["classes"]
            print(f"ok: convert {arch} from upstream {label}: max |diff| vs fixture {diff:.1e} on {len(idx)} pixels")

    # a wrong hyper-parameter file is refused by name
    bad = json.loads((tmp / "lstm_params.json").read_text())
    next(v for k, v in bad.items() if k.endswith("lstm hyperparameters"))["hidden size"] = 999
    (tmp / "bad_params.json").write_text(json.dumps(bad))
    rc = convert.main(["--checkpoint", str(tmp / "lstm_upstream.pth"), "--hparams", str(tmp / "bad_params.json"),
                       "--out", str(tmp / "bad.onnx")])
    assert rc == 1 and not (tmp / "bad.onnx").exists(), "a contradicting --hparams must fail and write nothing"
    print("ok: convert refuses hyper-parameters that contradict the checkpoint")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=data.REPO_ROOT / "out" / "models-train",
                   help="train.py's --work (checkpoints, held-out cube)")
    p.add_argument("--held-out", default="seed2-t2-d24", help="held-out run directory inside --work")
    args = p.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        check_fresh_exports(Path(tmp))
        check_conversion(args.work, Path(tmp), data.load_samples(args.work / args.held_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
