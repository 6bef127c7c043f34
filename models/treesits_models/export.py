"""Export a model to ONNX with its contract in `metadata_props`, and prove the export is exact.

The graph is `WithSoftmax(model)` exported by torch's dynamo exporter (opset 18, which onnxruntime
1.31 runs) with dynamic batch and sequence axes. `export` then runs onnxruntime on random batches of
several sizes and lengths (including T = 1 and series without observations) and refuses the file
unless every output matches torch to `atol` and its rows sum to 1.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from .architectures import MAX_DOY, LSTMClassifier, TempCNNClassifier, TransformerClassifier, WithSoftmax
from .contract import METADATA_KEY, validate

OPSET = 18


def input_names(contract: dict) -> list[str]:
    i = contract["inputs"]
    return [n for n in (i["values"], i.get("doy"), i.get("mask")) if n is not None]


def check_matches(model: nn.Module, contract: dict) -> None:
    """The contract must describe the model's interface (inputs, bands, classes, DOY table)."""
    hp = model.hparams
    if len(contract["bands"]) != hp["num_bands"]:
        raise ValueError(f"the contract lists {len(contract['bands'])} bands, the model takes {hp['num_bands']}")
    if len(contract["classes"]) != hp["num_classes"]:
        raise ValueError(
            f"the contract lists {len(contract['classes'])} classes, the model has {hp['num_classes']} outputs")
    if contract["output"]["kind"] != "probabilities":
        raise ValueError("exported graphs end in softmax: the contract's output.kind must be 'probabilities'")
    ins = contract["inputs"]
    if isinstance(model, LSTMClassifier):
        if ins.get("doy") or ins.get("mask"):
            raise ValueError("the LSTM takes only 'values': set inputs.doy and inputs.mask to null")
        if contract["sequence"]["padding"] != "left":
            raise ValueError("the LSTM reads its last step: sequence.padding must be 'left'")
        if contract["sequence"].get("ignores_padding", False) and model.hparams["bidirectional"]:
            raise ValueError("a bidirectional LSTM's backward direction reads padding: its contract must not "
                             "say sequence.ignores_padding (predict then batches series of one length, unpadded)")
        if contract["sequence"].get("pad_value", 0.0) != model.pad_value:
            raise ValueError(f"the LSTM recognises padding by the value {model.pad_value}: "
                             f"sequence.pad_value must be {model.pad_value}")
    elif isinstance(model, TransformerClassifier):
        if not (ins.get("doy") and ins.get("mask")):
            raise ValueError("the Transformer takes 'values', 'doy' and 'mask': name all three in inputs")
        if contract["doy"] != {"encoding": "sinusoidal", "dim": model.doy_dim}:
            raise ValueError(f"the Transformer encodes DOY with {model.doy_dim} sinusoidal channels: "
                             f"doy must be {{'encoding': 'sinusoidal', 'dim': {model.doy_dim}}}")
    elif isinstance(model, TempCNNClassifier):
        if not (ins.get("doy") and ins.get("mask")):
            raise ValueError("TempCNN takes 'values', 'doy' and 'mask': name all three in inputs")
        if contract["doy"] != {"encoding": "sinusoidal", "dim": model.doy_dim}:
            raise ValueError(f"TempCNN encodes DOY with {model.doy_dim} sinusoidal channels: "
                             f"doy must be {{'encoding': 'sinusoidal', 'dim': {model.doy_dim}}}")
        seq = contract["sequence"]
        if seq["max_length"] != model.max_length or seq["padding"] != "right":
            raise ValueError(f"TempCNN flattens {model.max_length} steps: sequence.max_length must be "
                             f"{model.max_length} and sequence.padding 'right'")
        if seq.get("pad_value", 0.0) != 0.0:
            raise ValueError("TempCNN pads with zeros in its graph: sequence.pad_value must be 0")


def example_inputs(contract: dict, batch: int, length: int, generator: np.random.Generator,
                   empty_rows: int = 0):
    """Random inputs shaped and padded as `predict` builds them (`empty_rows` series without observations)."""
    nb = len(contract["bands"])
    left = contract["sequence"]["padding"] == "left"
    n = generator.integers(1, length + 1, size=batch)
    n[:empty_rows] = 0
    n[min(empty_rows, batch - 1)] = length
    values = np.full((batch, length, nb), contract["sequence"].get("pad_value", 0.0), np.float32)
    doy = np.zeros((batch, length), np.int64)
    mask = np.zeros((batch, length), bool)
    for r, k in enumerate(n):
        sl = slice(length - k, length) if left else slice(0, k)
        values[r, sl] = generator.standard_normal((k, nb)).astype(np.float32)
        doy[r, sl] = np.sort(generator.integers(1, MAX_DOY + 1, size=k))
        mask[r, sl] = True
    feed = {contract["inputs"]["values"]: values}
    if contract["inputs"].get("doy"):
        feed[contract["inputs"]["doy"]] = doy
    if contract["inputs"].get("mask"):
        feed[contract["inputs"]["mask"]] = mask
    return feed


def verify(path: Path, model: nn.Module, contract: dict, atol: float = 1e-5, seed: int = 0) -> float:
    """Largest |onnxruntime − torch| over random batches of several B and T; raises above `atol`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = input_names(contract)
    if [i.name for i in session.get_inputs()] != names:
        raise AssertionError(f"{path}: inputs {[i.name for i in session.get_inputs()]}, contract says {names}")
    wrapped = WithSoftmax(model).eval()
    g = np.random.default_rng(seed)
    worst = 0.0
    max_len = contract["sequence"]["max_length"] or 64
    for batch, length in [(1, 1), (3, 5), (7, 12), (16, 24), (5, 36), (2, max_len)]:
        empty = 1 if batch > 2 else 0
        feed = example_inputs(contract, batch, length, g, empty_rows=empty)
        with torch.no_grad():
            ref = wrapped(*[torch.from_numpy(feed[n]) for n in names]).numpy()
        out = session.run([contract["output"]["name"]], feed)[0]
        if out.shape != (batch, len(contract["classes"])):
            raise AssertionError(f"{path}: output shape {out.shape} for B={batch}, T={length}")
        if not np.all(np.isfinite(out)) or np.abs(out.sum(axis=1) - 1).max() > 1e-4:
            raise AssertionError(f"{path}: rows are not probabilities for B={batch}, T={length}")
        err = float(np.abs(out - ref).max())
        if err > atol:
            raise AssertionError(f"{path}: onnxruntime differs from torch by {err} (B={batch}, T={length})")
        worst = max(worst, err)
    return worst


def strip_exporter_annotations(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node metadata (stack traces with absolute source paths and line numbers,
    FX node dumps): they bloat the file and make it depend on where and from which revision it was built."""
    graphs = [proto.graph] + [f for f in proto.functions]
    while graphs:
        g = graphs.pop()
        for node in g.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attr in node.attribute:
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
        for v in list(getattr(g, "initializer", [])) + list(getattr(g, "value_info", [])):
            del v.metadata_props[:]
        if hasattr(g, "metadata_props"):
            del g.metadata_props[:]


def export(model: nn.Module, contract: dict, path: Path, atol: float = 1e-5) -> float:
    """Writes `path` (atomically) and returns the largest deviation from torch found by `verify`."""
    validate(contract)
    check_matches(model, contract)
    model = model.eval()
    names = input_names(contract)
    wrapped = WithSoftmax(model).eval()
    example = example_inputs(contract, 4, 7, np.random.default_rng(1))
    args = tuple(torch.from_numpy(example[n]) for n in names)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    dynamic = {"inputs": tuple({0: batch, 1: time} for _ in names)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapped, args, input_names=names,
                                        output_names=[contract["output"]["name"]],
                                        dynamic_shapes=dynamic, dynamo=True, opset_version=OPSET,
                                        verbose=False)
        proto = program.model_proto
        strip_exporter_annotations(proto)
        proto.doc_string = contract["description"]
        proto.producer_name = "treesits-models"
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(contract, separators=(",", ":"))
        onnx.checker.check_model(proto)
        onnx.save_model(proto, tmp, save_as_external_data=False)
        worst = verify(Path(tmp), model, contract, atol)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return worst
