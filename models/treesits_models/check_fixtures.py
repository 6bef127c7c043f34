"""CI check of the committed fixture models, without PyTorch (numpy, pyarrow, onnxruntime from .venv).

    treesits-check-fixtures [--fixtures DIR]      (or: python3 models/check_fixtures.py, as scripts/test does)

For each `models/fixtures/<name>.onnx`: the contract in its metadata parses and equals the committed
`<name>.contract.json`; the model's inputs/outputs have the names, element types and (dynamic) shapes the
contract promises; batches packed as `predict` packs them, at two different sequence lengths, give
finite rows that sum to 1; and the answer for a series does not depend on how much padding surrounds it.
Exit status 0 when every check passes, 1 otherwise (one line per failure on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .contract import SENTINEL2_BANDS, TRUTH_CLASSES, read_from_onnx
from .data import Samples, pack

# models/fixtures, next to the package in the repository (or give --fixtures)
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures"

FIXTURES = ["lstm", "transformer"]
MAX_BYTES = 2 * 1024 * 1024


def synthetic_samples(rng: np.random.Generator, pixels: int, max_obs: int) -> Samples:
    """Random but plausible series (reflectance × 10000, sorted days of year), 1..max_obs observations."""
    n = rng.integers(1, max_obs + 1, size=pixels)
    offsets = np.zeros(pixels + 1, dtype=np.int64)
    np.cumsum(n, out=offsets[1:])
    values = rng.integers(100, 4000, size=(offsets[-1], len(SENTINEL2_BANDS))).astype(np.int16)
    doy = np.concatenate([np.sort(rng.choice(np.arange(1, 366), size=k, replace=False)) for k in n])
    return Samples(list(SENTINEL2_BANDS), values, doy.astype(np.int16), offsets,
                   np.zeros(pixels, np.uint8), np.zeros(pixels, np.int16), np.zeros(pixels, np.uint32),
                   np.zeros(pixels, np.uint32), ["X0000_Y0000"])


def feed_for(contract: dict, packed) -> dict:
    values, doy, mask = packed
    feed = {contract["inputs"]["values"]: values}
    if contract["inputs"].get("doy"):
        feed[contract["inputs"]["doy"]] = doy
    if contract["inputs"].get("mask"):
        feed[contract["inputs"]["mask"]] = mask
    return feed


def check(name: str, fixtures: Path = FIXTURES_DIR) -> list[str]:
    errors = []
    path = fixtures / f"{name}.onnx"
    if path.stat().st_size > MAX_BYTES:
        errors.append(f"{path.name} is {path.stat().st_size} bytes (limit {MAX_BYTES})")
    contract = read_from_onnx(path)
    committed = json.loads((fixtures / f"{name}.contract.json").read_text())
    if contract != committed:
        errors.append(f"{name}.contract.json differs from the contract inside {path.name}: re-run training/export")
    if contract["bands"] != SENTINEL2_BANDS or contract["classes"] != TRUTH_CLASSES:
        errors.append(f"{name}: bands/classes are not the Sentinel-2 bands and truth classes")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = {contract["inputs"]["values"]: ("tensor(float)", 3)}
    if contract["inputs"].get("doy"):
        expected[contract["inputs"]["doy"]] = ("tensor(int64)", 2)
    if contract["inputs"].get("mask"):
        expected[contract["inputs"]["mask"]] = ("tensor(bool)", 2)
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != set(expected):
        errors.append(f"{name}: model inputs {sorted(inputs)}, contract names {sorted(expected)}")
        return errors
    for n, (dtype, rank) in expected.items():
        i = inputs[n]
        if i.type != dtype or len(i.shape) != rank:
            errors.append(f"{name}: input '{n}' is {i.type} {i.shape}, expected {dtype} of rank {rank}")
        elif any(isinstance(d, int) for d in i.shape[:2]):
            errors.append(f"{name}: input '{n}' has fixed batch/sequence axes {i.shape[:2]}")
        elif rank == 3 and i.shape[2] != len(contract["bands"]):
            errors.append(f"{name}: input '{n}' has {i.shape[2]} bands, the contract {len(contract['bands'])}")
    outputs = session.get_outputs()
    if [o.name for o in outputs] != [contract["output"]["name"]]:
        errors.append(f"{name}: outputs {[o.name for o in outputs]}, contract says {contract['output']['name']}")
        return errors
    if outputs[0].type != "tensor(float)" or outputs[0].shape[1] != len(contract["classes"]):
        errors.append(f"{name}: output is {outputs[0].type} {outputs[0].shape}, expected float32 "
                      f"[B, {len(contract['classes'])}]")

    rng = np.random.default_rng(7)
    out_name = contract["output"]["name"]
    for pixels, max_obs in [(5, 12), (9, 36)]:
        samples = synthetic_samples(rng, pixels, max_obs)
        packed = pack(samples, contract)
        probs = session.run([out_name], feed_for(contract, packed))[0]
        t = packed[0].shape[1]
        if probs.shape != (pixels, len(contract["classes"])):
            errors.append(f"{name}: output shape {probs.shape} for B={pixels}, T={t}")
        elif not np.isfinite(probs).all() or np.abs(probs.sum(axis=1) - 1).max() > 1e-4:
            errors.append(f"{name}: rows do not sum to 1 for B={pixels}, T={t}")
        # the same series padded to max_length must give the same answer
        longer = pack(samples, contract, length=contract["sequence"]["max_length"])
        again = session.run([out_name], feed_for(contract, longer))[0]
        if np.abs(again - probs).max() > 2e-3 or (again.argmax(1) != probs.argmax(1)).any():
            errors.append(f"{name}: padding from T={t} to T={longer[0].shape[1]} changes the output by "
                          f"{np.abs(again - probs).max():.2e}")
    return errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="treesits-check-fixtures", description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", type=Path, default=FIXTURES_DIR, help=f"directory of the fixtures (default {FIXTURES_DIR})")
    args = p.parse_args(argv)
    failures = []
    for name in FIXTURES:
        try:
            errs = check(name, args.fixtures)
        except Exception as e:  # a broken file is a failure of this check, not a crash
            errs = [f"{name}: {type(e).__name__}: {e}"]
        failures += errs
        print(f"check_fixtures: {name}: {'ok' if not errs else 'FAILED'}", file=sys.stderr)
    for f in failures:
        print(f"check_fixtures: error: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
