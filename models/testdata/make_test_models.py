#!/usr/bin/env python3
"""Builds the tiny ONNX models `predict`'s tests run (committed next to this script; run it only to
regenerate them):

    .venv/bin/python models/testdata/make_test_models.py      (onnx==1.23.2, in the repo's .venv)

Every model is linear in its inputs with weights given by a closed formula (`weight` below), so a test
can recompute the exact expected output from a chunk's values and the contract alone. Each model looks
at its input in a way that exposes one packing rule:

- `linear_left.onnx`: x[B,T,5] (5 of the 10 Sentinel-2 bands, in a different order), left padding with
  0, mean/std scaling, logits out. logits = x[:,T-1,:]·W1 + Σ_t x[:,t,:]·W2 + b: the last step is the
  latest observation only when padding is on the left.
- `doy_right_mask.onnx`: values[B,T,4], doy[B,T] int64, mask[B,T] bool, right padding with −1,
  max_length 6 (evenly thinned), scale + offset, probabilities out (softmax in the graph).
  logits = values[:,0,:]·W1 + Σ_t mask·values·W2 + (Σ_t mask·doy/366)·u + b.
- `fixed_latest.onnx`: x[B,5,6] with a *fixed* sequence length 5, the six bands Landsat shares with
  Sentinel-2, left padding with 0.5 (padded steps enter the sum), the latest 5 observations kept.
  logits = x[:,4,:]·W1 + Σ_t x[:,t,:]·W2 + b.
- `common6.onnx`: x[B,T,6], the six bands Landsat shares with Sentinel-2 (BLUE GREEN RED NIR SWIR1
  SWIR2), a contract that lists the sensors it accepts (SEN2A, SEN2B, LND08, LND09), left padding
  with 0, mean/std scaling, logits out; the same last + sum graph as linear_left, its own weights:
  logits = x[:,T-1,:]·W1 + Σ_t x[:,t,:]·W2 + b with W1 = weight(12), W2 = weight(13), b = weight(14).
  It maps a Landsat + Sentinel-2 series (`cube-extract --model common6.onnx`).
- `no_contract.onnx`: the graph of linear_left without a contract (its contract is
  `linear_left.contract.json`, for `--contract`).

- `bilstm.onnx`: values[B,T,4] → a bidirectional ONNX `LSTM` (hidden 5, no `sequence_lens`) → the two
  directions' final states → Linear → softmax. Left padding with 0, `max_length` 8 (evenly thinned),
  and *no* `ignores_padding` in its contract: both directions read every step they are given, padding
  included (the backward direction reads the left padding last), as a converted SITS-NN bidirectional
  LSTM does. The tests check that its answers do not depend on the batch size (predict never pads it)
  and equal an LSTM run pixel by pixel on the exact series.

Each model's contract is also written as NAME.contract.json, the tests' reference.
- `missing_tensor.onnx`: linear_left's graph whose contract names an input `values` the graph lacks.
- `wrong_rank.onnx`: a contract like linear_left's on a graph whose input is x[B,5] (rank 2).
"""

import json
import os

import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
IR_VERSION = 8  # readable by every ONNX Runtime since 1.10

S2_NAMES = ["spruce", "silver fir", "Douglas fir", "pine", "oak", "red oak", "beech", "sycamore",
            "other conifer", "other broadleaf"]


def weight(seed, rows, cols, scale):
    """W[i][j] = ((i·31 + j·17 + seed·7) mod 13 − 6) · scale (the tests use the same formula)."""
    return [[((i * 31 + j * 17 + seed * 7) % 13 - 6) * scale for j in range(cols)] for i in range(rows)]


def const(name, rows):
    flat = [v for r in rows for v in r]
    return helper.make_tensor(name, TensorProto.FLOAT, [len(rows), len(rows[0])], flat)


def classes(codes):
    colours = [[31, 94, 49], [62, 140, 80], [20, 60, 110], [178, 140, 60], [200, 80, 40],
               [230, 30, 60], [120, 200, 60], [240, 210, 50], [90, 120, 140], [170, 220, 160]]
    return [{"code": c, "name": S2_NAMES[c], "colour": colours[c]} for c in codes]


def contract(model_id, bands, inputs, scaling, sequence, doy, codes, output):
    return {
        "contract_version": 1,
        "model_id": model_id,
        "description": "tiny linear test model made by models/testdata/make_test_models.py",
        "bands": bands,
        "inputs": inputs,
        "scaling": scaling,
        "sequence": sequence,
        "doy": doy,
        "classes": classes(codes),
        "output": output,
    }


def save(name, graph, contract_doc=None, write_contract=True):
    """Writes NAME.onnx (with the contract embedded) and, for the tests, NAME.contract.json."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="treesits-testdata")
    model.ir_version = IR_VERSION
    if contract_doc is not None:
        helper.set_model_props(model, {"treesits.contract": json.dumps(contract_doc, indent=1)})
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))
    if contract_doc is not None and write_contract:
        with open(os.path.join(HERE, name.replace(".onnx", ".contract.json")), "w") as f:
            json.dump(contract_doc, f, indent=2)
            f.write("\n")


def last_plus_sum_graph(name, in_name, seq, bands, k, seed, out_name, softmax=False):
    """out = x[:, -1, :]·W1 + Σ_t x[:, t, :]·W2 + b (optionally softmaxed)."""
    w1 = weight(seed, bands, k, 0.05)
    w2 = weight(seed + 1, bands, k, 0.01)
    b = weight(seed + 2, 1, k, 0.1)
    nodes = [
        helper.make_node("Gather", [in_name, "minus_one"], ["last"], axis=1),
        helper.make_node("ReduceSum", [in_name, "axis1"], ["total"], keepdims=0),
        helper.make_node("MatMul", ["last", "W1"], ["a"]),
        helper.make_node("MatMul", ["total", "W2"], ["c"]),
        helper.make_node("Add", ["a", "c"], ["ac"]),
        helper.make_node("Add", ["ac", "b"], ["logits" if softmax else out_name]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [out_name], axis=-1))
    inits = [
        const("W1", w1), const("W2", w2), const("b", b),
        helper.make_tensor("minus_one", TensorProto.INT64, [], [-1]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    return helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["B", seq, bands])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["B", k])],
        initializer=inits,
    )


def linear_left():
    bands = ["NIR", "RED", "REDEDGE1", "GREEN", "SWIR1"]
    c = contract(
        "test-linear-left", bands,
        {"values": "x"},
        {"scale": 0.0001, "offset": 0.0, "mean": [0.25, 0.05, 0.1, 0.07, 0.15],
         "std": [0.1, 0.03, 0.04, 0.03, 0.06]},
        {"max_length": None, "padding": "left", "pad_value": 0.0, "long_series": "evenly"},
        {"encoding": "none"},
        [0, 3, 4, 6],
        {"name": "logits", "kind": "logits"},
    )
    graph = last_plus_sum_graph("linear_left", "x", "T", len(bands), 4, 1, "logits")
    save("linear_left.onnx", graph, c)
    save("no_contract.onnx", graph, None)
    missing = dict(c, model_id="test-missing-tensor", inputs={"values": "values"})
    save("missing_tensor.onnx", graph, missing, write_contract=False)
    # x[B, 5]: a rank-2 input where the contract promises [B, T, bands].
    rank2 = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["logits"])], "wrong_rank",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 4])],
        initializer=[const("W1", weight(1, 5, 4, 0.05))],
    )
    save("wrong_rank.onnx", rank2, dict(c, model_id="test-wrong-rank"), write_contract=False)


def common6():
    bands = ["BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2"]
    c = contract(
        "test-common6", bands,
        {"values": "x"},
        {"scale": 0.0001, "offset": 0.0, "mean": [0.04, 0.06, 0.05, 0.25, 0.15, 0.08],
         "std": [0.02, 0.03, 0.03, 0.1, 0.06, 0.04]},
        {"max_length": None, "padding": "left", "pad_value": 0.0, "long_series": "evenly"},
        {"encoding": "none"},
        [0, 2, 4, 6, 9],
        {"name": "logits", "kind": "logits"},
    )
    # The sensors it accepts, right after its bands.
    c = {k: v for k, v in list(c.items())[:4]} | {"sensors": ["SEN2A", "SEN2B", "LND08", "LND09"]} \
        | {k: v for k, v in list(c.items())[4:]}
    graph = last_plus_sum_graph("common6", "x", "T", len(bands), 5, 12, "logits")
    save("common6.onnx", graph, c)


def doy_right_mask():
    bands = ["SWIR2", "BROADNIR", "BLUE", "REDEDGE3"]
    k = 5
    c = contract(
        "test-doy-right-mask", bands,
        {"values": "values", "doy": "doy", "mask": "mask"},
        {"scale": 0.0001, "offset": -0.05, "mean": [], "std": []},
        {"max_length": 6, "padding": "right", "pad_value": -1.0, "long_series": "evenly"},
        {"encoding": "sinusoidal", "dim": 8},
        [9, 7, 5, 1, 2],
        {"name": "probabilities", "kind": "probabilities"},
    )
    w1 = weight(4, len(bands), k, 0.5)
    w2 = weight(5, len(bands), k, 0.25)
    u = weight(6, 1, k, 0.05)
    b = weight(7, 1, k, 0.1)
    nodes = [
        helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),          # [B,T]
        helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),                   # [B,T,1]
        helper.make_node("Mul", ["values", "m3"], ["vm"]),
        helper.make_node("ReduceSum", ["vm", "axis1"], ["total"], keepdims=0),   # [B,C]
        helper.make_node("Gather", ["values", "zero"], ["first"], axis=1),       # [B,C]
        helper.make_node("Cast", ["doy"], ["d"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["d", "m"], ["dm"]),
        helper.make_node("ReduceSum", ["dm", "axis1"], ["dsum"], keepdims=1),    # [B,1]
        helper.make_node("Mul", ["dsum", "inv366"], ["dscaled"]),
        helper.make_node("MatMul", ["first", "W1"], ["a"]),
        helper.make_node("MatMul", ["total", "W2"], ["c"]),
        helper.make_node("MatMul", ["dscaled", "u"], ["e"]),
        helper.make_node("Add", ["a", "c"], ["ac"]),
        helper.make_node("Add", ["ac", "e"], ["ace"]),
        helper.make_node("Add", ["ace", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    inits = [
        const("W1", w1), const("W2", w2), const("u", u), const("b", b),
        helper.make_tensor("zero", TensorProto.INT64, [], [0]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("inv366", TensorProto.FLOAT, [], [1.0 / 366.0]),
    ]
    graph = helper.make_graph(
        nodes, "doy_right_mask",
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["B", "T", len(bands)]),
         helper.make_tensor_value_info("doy", TensorProto.INT64, ["B", "T"]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["B", "T"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["B", k])],
        initializer=inits,
    )
    save("doy_right_mask.onnx", graph, c)


def fixed_latest():
    bands = ["BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2"]
    c = contract(
        "test-fixed-latest", bands,
        {"values": "x"},
        {"scale": 0.0001, "offset": 0.0, "mean": [], "std": []},
        {"max_length": 5, "padding": "left", "pad_value": 0.5, "long_series": "latest"},
        {"encoding": "none"},
        [0, 1, 8],
        {"name": "scores", "kind": "logits"},
    )
    graph = last_plus_sum_graph("fixed_latest", "x", 5, len(bands), 3, 8, "scores")
    # Scale these weights up: reflectances are small without mean/std normalisation.
    for init in graph.initializer:
        if init.name in ("W1", "W2"):
            init.float_data[:] = [v * 20 for v in init.float_data]
    save("fixed_latest.onnx", graph, c)


def bilstm():
    """Weights: W[d] = weight(20+d, 4H, bands, 0.08), R[d] = weight(30+d, 4H, H, 0.1),
    B[d] = weight(40+d, 1, 8H, 0.05) (ONNX gate order i, o, f, c; Wb then Rb), head
    weight(50, 2H, K, 0.3) + weight(51, 1, K, 0.1) on [forward final state ‖ backward final state]."""
    bands = ["BLUE", "RED", "NIR", "SWIR1"]
    hidden, k = 5, 4
    c = contract(
        "test-bilstm", bands,
        {"values": "values"},
        {"scale": 0.0001, "offset": 0.0, "mean": [0.05, 0.05, 0.25, 0.15], "std": [0.03, 0.03, 0.1, 0.06]},
        {"max_length": 8, "padding": "left", "pad_value": 0.0, "long_series": "evenly"},
        {"encoding": "none"},
        [0, 3, 6, 9],
        {"name": "probabilities", "kind": "probabilities"},
    )

    def stacked(name, seed, rows, cols, scale):
        flat = [v for d in range(2) for r in weight(seed + d, rows, cols, scale) for v in r]
        return helper.make_tensor(name, TensorProto.FLOAT, [2, rows, cols], flat)

    inits = [
        stacked("W", 20, 4 * hidden, len(bands), 0.08),
        stacked("R", 30, 4 * hidden, hidden, 0.1),
        helper.make_tensor("Bias", TensorProto.FLOAT, [2, 8 * hidden],
                           [v for d in range(2) for v in weight(40 + d, 1, 8 * hidden, 0.05)[0]]),
        const("Wout", weight(50, 2 * hidden, k, 0.3)),
        const("bout", weight(51, 1, k, 0.1)),
        helper.make_tensor("flat", TensorProto.INT64, [2], [0, -1]),
    ]
    nodes = [
        helper.make_node("Transpose", ["values"], ["x_tbc"], perm=[1, 0, 2]),              # [T,B,C]
        helper.make_node("LSTM", ["x_tbc", "W", "R", "Bias"], ["", "h_last"], hidden_size=hidden,
                         direction="bidirectional"),                                       # [2,B,H]
        helper.make_node("Transpose", ["h_last"], ["h_bdh"], perm=[1, 0, 2]),              # [B,2,H]
        helper.make_node("Reshape", ["h_bdh", "flat"], ["h"]),                             # [B,2H]
        helper.make_node("MatMul", ["h", "Wout"], ["hw"]),
        helper.make_node("Add", ["hw", "bout"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "bilstm",
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["B", "T", len(bands)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["B", k])],
        initializer=inits,
    )
    save("bilstm.onnx", graph, c)


if __name__ == "__main__":
    linear_left()
    common6()
    doy_right_mask()
    fixed_latest()
    bilstm()
