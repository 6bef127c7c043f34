"""The model contract as Python data: building it, checking it, reading it from an ONNX file.

Mirrors `crates/treesits-core/src/contract.rs` (the authority; `docs/model-contract.md` documents every
key). No torch here: `models/check_fixtures.py` uses this module in CI.
"""

from __future__ import annotations

import json

METADATA_KEY = "treesits.contract"
CONTRACT_VERSION = 1

# Sentinel-2 bands in the cube's order (FORCE's names).
SENTINEL2_BANDS = [
    "BLUE", "GREEN", "RED", "REDEDGE1", "REDEDGE2", "REDEDGE3", "BROADNIR", "NIR", "SWIR1", "SWIR2",
]

# treesits_core::species::truth_classes(): the ten species (codes 0-9) and non-forest (10).
# The Rust test `fixture_contracts_parse` checks the fixtures' copies against the Rust table.
TRUTH_CLASSES = [
    {"code": 0, "name": "spruce", "colour": [31, 94, 49]},
    {"code": 1, "name": "silver fir", "colour": [62, 140, 80]},
    {"code": 2, "name": "Douglas fir", "colour": [20, 60, 110]},
    {"code": 3, "name": "pine", "colour": [178, 140, 60]},
    {"code": 4, "name": "oak", "colour": [200, 80, 40]},
    {"code": 5, "name": "red oak", "colour": [230, 30, 60]},
    {"code": 6, "name": "beech", "colour": [120, 200, 60]},
    {"code": 7, "name": "sycamore", "colour": [240, 210, 50]},
    {"code": 8, "name": "other conifer", "colour": [90, 120, 140]},
    {"code": 9, "name": "other broadleaf", "colour": [170, 220, 160]},
    {"code": 10, "name": "non-forest", "colour": [220, 220, 220]},
]

_TOP_KEYS = {
    "contract_version", "model_id", "description", "bands", "inputs", "scaling", "sequence", "doy",
    "classes", "output",
}
_REQUIRED_TOP = _TOP_KEYS - {"description"}


class ContractError(ValueError):
    pass


def make_contract(
    *,
    model_id: str,
    description: str,
    bands: list[str],
    mean: list[float],
    std: list[float],
    classes: list[dict],
    max_length: int | None,
    padding: str,
    long_series: str = "evenly",
    doy_dim: int | None = None,
    use_mask: bool = False,
    scale: float = 1e-4,
    offset: float = 0.0,
    pad_value: float = 0.0,
    ignores_padding: bool = False,
    output_kind: str = "probabilities",
) -> dict:
    """A contract document for a model with inputs `values` (+ `doy`, `mask`) and output `probabilities`."""
    c = {
        "contract_version": CONTRACT_VERSION,
        "model_id": model_id,
        "description": description,
        "bands": list(bands),
        "inputs": {
            "values": "values",
            "doy": "doy" if doy_dim is not None else None,
            "mask": "mask" if use_mask else None,
        },
        "scaling": {
            "scale": float(scale),
            "offset": float(offset),
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
        },
        "sequence": {
            "max_length": max_length,
            "padding": padding,
            "pad_value": float(pad_value),
            "long_series": long_series,
            # Only a model that masks padding exactly may say so: predict then pads series to the
            # longest of their batch; otherwise a batch holds series of one length (no padding at all).
            **({"ignores_padding": True} if ignores_padding else {}),
        },
        "doy": {"encoding": "none"} if doy_dim is None else {"encoding": "sinusoidal", "dim": doy_dim},
        "classes": [dict(k) for k in classes],
        "output": {"name": "probabilities" if output_kind == "probabilities" else "logits",
                   "kind": output_kind},
    }
    validate(c)
    return c


def validate(c: dict) -> dict:
    """The checks of `ModelContract::from_json` + `validate`, so a bad contract fails before Rust sees it."""
    def need(cond, msg):
        if not cond:
            raise ContractError(f"model contract: {msg}")

    need(isinstance(c, dict), "not a JSON object")
    need(c.get("contract_version") == CONTRACT_VERSION,
         f"contract version {c.get('contract_version')!r} is not supported (expected {CONTRACT_VERSION})")
    unknown = set(c) - _TOP_KEYS
    need(not unknown, f"unknown keys {sorted(unknown)}")
    missing = _REQUIRED_TOP - set(c)
    need(not missing, f"missing keys {sorted(missing)}")
    need(isinstance(c["model_id"], str) and c["model_id"].strip(), "'model_id' is empty")
    bands = c["bands"]
    need(isinstance(bands, list) and bands and all(isinstance(b, str) for b in bands), "'bands' is empty")
    need(len(set(bands)) == len(bands), "a band is listed twice in 'bands'")
    inputs = c["inputs"]
    need(set(inputs) <= {"values", "doy", "mask"} and "values" in inputs, "'inputs' needs 'values' only "
         "plus optional 'doy' and 'mask'")
    s = c["scaling"]
    need(set(s) <= {"scale", "offset", "mean", "std"} and "scale" in s, "bad 'scaling' keys")
    need(s["scale"] != 0, "'scaling.scale' must be non-zero")
    for k in ("mean", "std"):
        v = s.get(k, [])
        need(not v or len(v) == len(bands), f"'scaling.{k}' has {len(v)} values for {len(bands)} bands")
    need(all(v > 0 for v in s.get("std", [])), "'scaling.std' values must be positive")
    q = c["sequence"]
    need(set(q) <= {"max_length", "padding", "pad_value", "long_series", "ignores_padding"} and "padding" in q,
         "bad 'sequence' keys")
    need(isinstance(q.get("ignores_padding", False), bool), "'sequence.ignores_padding' must be true or false")
    need(q["padding"] in ("left", "right"), "'sequence.padding' must be left or right")
    need(q.get("long_series", "evenly") in ("evenly", "latest"), "'sequence.long_series' must be "
         "evenly or latest")
    ml = q.get("max_length")
    need(ml is None or (isinstance(ml, int) and ml >= 1), "'sequence.max_length' must be at least 1")
    d = c["doy"]
    need(d.get("encoding") in ("none", "sinusoidal"), "'doy.encoding' must be none or sinusoidal")
    if d["encoding"] == "none":
        need(set(d) == {"encoding"}, "'doy' with encoding none takes no other key")
        need(inputs.get("doy") is None, "'inputs.doy' is set but 'doy.encoding' is none")
    else:
        need(set(d) == {"encoding", "dim"} and isinstance(d["dim"], int), "'doy' sinusoidal needs 'dim'")
        need(inputs.get("doy") is not None, "'doy.encoding' needs an 'inputs.doy' tensor name")
    classes = c["classes"]
    need(isinstance(classes, list) and classes, "'classes' is empty")
    codes = [k["code"] for k in classes]
    need(len(set(codes)) == len(codes), "a class code is listed twice")
    need(all(0 <= k < 255 for k in codes), "class codes must be 0..254 (255 is nodata)")
    for k in classes:
        need(set(k) == {"code", "name", "colour"} and len(k["colour"]) == 3, f"bad class {k}")
    o = c["output"]
    need(set(o) == {"name", "kind"} and o["kind"] in ("probabilities", "logits"), "bad 'output'")
    return c


def to_json(c: dict) -> str:
    return json.dumps(c, indent=2) + "\n"


def read_from_onnx(path) -> dict:
    """The contract stored in an ONNX file's metadata_props (needs only the `onnx` or `onnxruntime` package)."""
    try:
        import onnxruntime as ort

        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        raw = meta.custom_metadata_map.get(METADATA_KEY)
    except ImportError:  # pragma: no cover - torch venv without onnxruntime
        import onnx

        m = onnx.load(str(path))
        raw = {p.key: p.value for p in m.metadata_props}.get(METADATA_KEY)
    if raw is None:
        raise ContractError(f"{path}: no '{METADATA_KEY}' in the model's metadata; supply one with --contract")
    return validate(json.loads(raw))
