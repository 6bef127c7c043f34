"""Convert a SITS-NN-Classification checkpoint (or one of ours) into an ONNX model with a contract.

    python -m treesits_models.convert --checkpoint lstm_5pure.pth --hparams lstm_5pure_params.json \\
        --classes species --mean 0.05,… --std 0.02,… --out lstm.onnx

The checkpoint may be a `state_dict` (`.pt`/`.pth`, also wrapped as {"state_dict": …} or
{"model_state": …}) or a pickled module (`torch.save(model)`; upstream classes need not be importable).
Hyper-parameters come from the state_dict's shapes; the number of Transformer heads, which shapes do not
show, from `--hparams` (upstream's `*_params.json` or a flat JSON of our names) or `--nhead`.

Parameter names (prefix → ours; everything after the prefix is PyTorch's own and unchanged):

| upstream (SITS-NN)        | ours           | what                                            |
| ------------------------- | -------------- | ----------------------------------------------- |
| `module.`                 | (dropped)      | `nn.DataParallel` wrapper                        |
| `embd.`                   | `embedding.`   | LSTM band embedding, Linear(bands → embed)       |
| `src_embd.`               | `embedding.`   | Transformer band embedding, Linear(bands → d)    |
| `lstm.`                   | `lstm.`        | nn.LSTM (`weight_ih_l0`, `…_reverse`, …)         |
| `transformer_encoder.`    | `encoder.`     | nn.TransformerEncoder (`layers.N.…`, `norm.…`)   |
| `fc.0/2/4.`               | `head.0/2/4.`  | Linear → ReLU → BatchNorm1d → Dropout → Linear   |
| `PEinstance.pe`, `pos_encoder.pe`, `pe` | (dropped) | DOY table: recomputed, identical rows 1..366 |
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
import types
from pathlib import Path

import torch
from torch import nn

from .architectures import build
from .contract import SENTINEL2_BANDS, TRUTH_CLASSES, make_contract, to_json
from .export import export

UPSTREAM_NAME_MAP = [
    ("module.", ""),
    ("embd.", "embedding."),
    ("src_embd.", "embedding."),
    ("transformer_encoder.", "encoder."),
    ("fc.", "head."),
]
DROPPED = re.compile(r"^(PEinstance\.pe|pos_encoder\.pe|pe)$")

# upstream *_params.json keys → our hyper-parameter names
UPSTREAM_HPARAMS = {
    "number of bands": "num_bands",
    "number of classes": "num_classes",
    "hidden size": "hidden_size",
    "number of layers": "num_layers",
    "number of heads": "nhead",
    "feedforward dimension": "dim_feedforward",
}

SPECIES = TRUTH_CLASSES[:10]


class ConvertError(Exception):
    pass


def map_names(state: dict) -> dict:
    """Upstream (or DataParallel-wrapped) parameter names → ours; DOY tables dropped."""
    out = {}
    for key, value in state.items():
        new = key
        for old, ours in UPSTREAM_NAME_MAP:
            if new.startswith(old):
                new = ours + new[len(old):]
        if DROPPED.match(new):
            continue
        if new in out:
            raise ConvertError(f"two checkpoint entries map onto '{new}'")
        out[new] = value
    return out


class _TolerantUnpickler(pickle.Unpickler):
    """Unpickles modules whose class cannot be imported (e.g. `sits_classifier.models.lstm`) as bare
    nn.Modules: their parameters and submodules survive, which is all a conversion needs."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if module.startswith(("torch", "collections", "builtins", "numpy")):
                raise
            return type(name, (nn.Module,), {"__module__": module})


_tolerant_pickle = types.SimpleNamespace(
    Unpickler=_TolerantUnpickler, load=pickle.load, __name__="treesits_tolerant_pickle")


def load_state_dict(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # A pickled module: this runs code from the file, so convert only checkpoints you trust.
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle)
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for k in ("state_dict", "model_state", "model_state_dict", "model"):
            if k in obj and isinstance(obj[k], dict):
                return obj[k]
            if k in obj and isinstance(obj[k], nn.Module):
                return obj[k].state_dict()
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ConvertError(f"{path}: neither a state_dict nor a pickled module")


def infer_hparams(state: dict) -> tuple[str, dict]:
    """Architecture and the hyper-parameters that the (mapped) state_dict's shapes determine."""
    def shape(k):
        if k not in state:
            raise ConvertError(f"the checkpoint has no '{k}': not a SITS-NN LSTM/Transformer classifier")
        return tuple(state[k].shape)

    head_hidden, head_in = shape("head.0.weight")
    if "head.2.running_mean" not in state:
        raise ConvertError("the head has no BatchNorm1d at index 2: only the classifier head "
                           "(Linear, ReLU, BatchNorm1d, Dropout, Linear) is supported")
    num_classes = shape("head.4.weight")[0]
    embed, bands = shape("embedding.weight")
    hp = dict(num_bands=bands, num_classes=num_classes, head_hidden=head_hidden)
    if "lstm.weight_ih_l0" in state:
        layers = sum(1 for k in state if re.fullmatch(r"lstm\.weight_ih_l\d+", k))
        hidden = shape("lstm.weight_hh_l0")[1]
        bidirectional = "lstm.weight_ih_l0_reverse" in state
        hp.update(embed_size=embed, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional)
        if head_in != hidden * (2 if bidirectional else 1):
            raise ConvertError(f"head takes {head_in} features but the LSTM gives {hidden}×directions")
        return "lstm", hp
    if "encoder.layers.0.self_attn.in_proj_weight" in state:
        layers = sum(1 for k in state if re.fullmatch(r"encoder\.layers\.\d+\.self_attn\.in_proj_weight", k))
        width = shape("encoder.layers.0.self_attn.in_proj_weight")[1]
        if width == embed:
            raise ConvertError(
                f"encoder width {width} equals the band embedding's ({embed}): the SITS-NN fork's "
                "TransformerClassifier layout, which *adds* a sinusoidal table to the band embedding "
                "instead of concatenating the day-of-year encoding, runs its encoder sequence-first "
                "(batch_first=False) and classifies from the last step's output. Not converted: the "
                "weights do not say whether the added table was indexed by day of year or by position "
                "in the series (the fork's versions differ), and without a mask the last step of a "
                "padded series is padding; give it a reimplementation or retrain with the reference "
                "Transformer (python -m treesits_models.train --arch transformer)")
        if width != 2 * embed:
            raise ConvertError(f"encoder width {width} is neither the band embedding ({embed}) nor twice it: "
                               "only the DOY encoding concatenated to the band embedding (width 2·embedding) "
                               "is supported")
        if "encoder.norm.weight" not in state:
            raise ConvertError("the encoder has no final LayerNorm ('transformer_encoder.norm')")
        hp.update(d_model=embed, num_layers=layers,
                  dim_feedforward=shape("encoder.layers.0.linear1.weight")[0])
        return "transformer", hp
    raise ConvertError("the checkpoint has neither 'lstm.*' nor 'transformer_encoder.*' parameters")


def read_hparams_file(path: Path) -> dict:
    """Upstream `*_params.json` ({"general hyperparameters": …, "<model> hyperparameters": …}) or flat."""
    raw = json.loads(Path(path).read_text())
    flat = {}
    for section, values in raw.items():
        if isinstance(values, dict):
            if section.startswith("bi-lstm"):
                flat["bidirectional"] = True
            if section.startswith("general"):
                continue
            flat.update(values)
        else:
            flat[section] = values
    out = {}
    for k, v in flat.items():
        out[UPSTREAM_HPARAMS.get(k, k)] = v
    return out


def parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConvertError(f"--{what}: expected comma-separated numbers, got '{text}'") from None


def classes_from(arg: str | None, num_classes: int) -> list[dict]:
    if arg is None:
        arg = {10: "species", 11: "truth"}.get(num_classes)
        if arg is None:
            raise ConvertError(f"the model has {num_classes} outputs: give --classes FILE.json "
                               "([{\"code\":…,\"name\":…,\"colour\":[r,g,b]}, …] in output order)")
    if arg == "species":
        classes = SPECIES
    elif arg == "truth":
        classes = TRUTH_CLASSES
    else:
        classes = json.loads(Path(arg).read_text())
    if len(classes) != num_classes:
        raise ConvertError(f"--classes lists {len(classes)} classes but the model has {num_classes} outputs")
    return classes


def convert(args) -> dict:
    state = map_names(load_state_dict(args.checkpoint))
    arch, hp = infer_hparams(state)
    if args.arch and args.arch != arch:
        raise ConvertError(f"--arch {args.arch}, but the checkpoint holds a {arch}")
    given = read_hparams_file(args.hparams) if args.hparams else {}
    if "embedding size" in given:  # upstream: the LSTM's embedding, the Transformer's d_model
        given["embed_size" if arch == "lstm" else "d_model"] = given.pop("embedding size")
    if args.nhead:
        given["nhead"] = args.nhead
    for k, v in given.items():
        if k in hp and k != "bidirectional" and hp[k] != v:
            raise ConvertError(f"hyper-parameter '{k}' is {v} in --hparams but {hp[k]} in the checkpoint")
    if arch == "transformer":
        if "nhead" not in given:
            raise ConvertError("the number of attention heads is not in the checkpoint: give --nhead N or --hparams")
        hp["nhead"] = int(given["nhead"])
    model = build(arch, **hp)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConvertError(f"checkpoint does not fit the {arch}: missing {missing}, unexpected {unexpected}")
    model.eval()
    bands = args.bands.split(",") if args.bands else SENTINEL2_BANDS
    if len(bands) != hp["num_bands"]:
        raise ConvertError(f"--bands lists {len(bands)} bands but the model takes {hp['num_bands']}")
    mean = parse_floats(args.mean, "mean") if args.mean else []
    std = parse_floats(args.std, "std") if args.std else []
    contract = make_contract(
        model_id=args.model_id or Path(args.out).stem,
        description=args.description or f"{arch} converted from {Path(args.checkpoint).name} "
                                        f"({json.dumps(hp, sort_keys=True)})",
        bands=bands, mean=mean, std=std, scale=args.scale, offset=args.offset,
        classes=classes_from(args.classes, hp["num_classes"]),
        doy_dim=model.doy_dim if arch == "transformer" else None, use_mask=arch == "transformer",
        max_length=args.max_length if args.max_length is not None else (64 if arch == "lstm" else 128),
        padding="left" if arch == "lstm" else "right", long_series=args.long_series,
        # Never claim the model ignores padding: an upstream LSTM's backward direction (and any
        # upstream model's training) saw unpadded or differently padded series, so predict must
        # give it series of one length per batch, unpadded.
        ignores_padding=False,
    )
    worst = export(model, contract, Path(args.out))
    if args.contract_out:
        Path(args.contract_out).write_text(to_json(contract))
    print(f"convert: {arch} {json.dumps(hp, sort_keys=True)} → {args.out} "
          f"(onnxruntime vs torch max |diff| {worst:.1e})", file=sys.stderr)
    return contract


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m treesits_models.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="state_dict (.pt/.pth) or pickled module")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write (atomically)")
    p.add_argument("--arch", choices=["lstm", "transformer"], help="expected architecture (default: detected)")
    p.add_argument("--hparams", type=Path, help="upstream *_params.json or a flat JSON of hyper-parameters")
    p.add_argument("--nhead", type=int, help="attention heads of a Transformer (not visible in its weights)")
    p.add_argument("--bands", help=f"band names in input order (default: {','.join(SENTINEL2_BANDS)})")
    p.add_argument("--scale", type=float, default=1e-4,
                   help="x = ((raw·scale + offset) − mean)/std; raw is the cube's Int16 (default 1e-4: reflectance)")
    p.add_argument("--offset", type=float, default=0.0, help="see --scale (default 0)")
    p.add_argument("--mean", help="per-band mean after scale/offset, comma-separated (default: none = 0)")
    p.add_argument("--std", help="per-band standard deviation after scale/offset, comma-separated (default: none = 1)")
    p.add_argument("--classes", help="'species' (codes 0-9), 'truth' (0-10) or a JSON file of "
                                     "{code,name,colour} in output order (default: by output count)")
    p.add_argument("--max-length", type=int, help="longest sequence (default 64 LSTM, 128 Transformer)")
    p.add_argument("--long-series", choices=["evenly", "latest"], default="evenly",
                   help="how longer series are thinned (default evenly)")
    p.add_argument("--model-id", help="contract model_id (default: output file stem)")
    p.add_argument("--description", help="contract description")
    p.add_argument("--contract-out", type=Path, help="also write the contract JSON here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        convert(args)
    except (ConvertError, ValueError, FileNotFoundError) as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
