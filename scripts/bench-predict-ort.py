#!/usr/bin/env python3
"""Baseline for scripts/bench-predict: a bare ONNX Runtime session over the same batches predict runs.

    bench-predict-ort.py MODEL CHUNK_DIR THREADS BATCH_SIZE

Packs every chunk in CHUNK_DIR as the model's contract says (bands by name, scaling, thinning,
padding side, day of year, mask) and cuts the pixels into the same length-sorted batches as predict
(one series length per batch unless the contract says the model ignores padding),
all *before* the clock starts; then times only `session.run` over those batches. Prints one line:
`<seconds in session.run> <pixels> <batches>`.
"""

import glob
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.ipc as ipc


def thin(n, max_length, rule):
    if max_length is None or n <= max_length:
        return np.arange(n)
    if rule == "latest":
        return np.arange(n - max_length, n)
    if max_length == 1:
        return np.array([n - 1])
    i = np.arange(max_length)
    return (2 * i * (n - 1) + (max_length - 1)) // (2 * (max_length - 1))


def pack(table, c, fixed_length, batch_size):
    names = table.schema.names
    bands = [table.column(names.index(b)).combine_chunks() for b in c["bands"]]
    dates = table.column("date").combine_chunks()
    offsets = dates.offsets.to_numpy()
    values = np.stack([b.values.to_numpy(zero_copy_only=False).astype(np.float64) for b in bands], axis=1)
    sc = c["scaling"]
    k = len(c["bands"])
    mean = np.array(sc.get("mean") or [0.0] * k)
    std = np.array(sc.get("std") or [1.0] * k)
    scaled = ((values * sc["scale"] + sc.get("offset", 0.0) - mean) / std).astype(np.float32)
    days = dates.values.to_numpy(zero_copy_only=False).astype("datetime64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    seq = c["sequence"]
    max_length = seq.get("max_length")
    n_obs = np.diff(offsets)
    lengths = np.minimum(n_obs, max_length) if max_length else n_obs
    pixels = np.nonzero(n_obs > 0)[0]
    order = pixels[np.argsort(lengths[pixels], kind="stable")]
    # predict's batches: cut the length-sorted pixels into runs of one length (no padding at all)
    # unless the model has a fixed length or its contract says it ignores padding.
    if fixed_length or seq.get("ignores_padding", False):
        runs = [order]
    else:
        cuts = np.flatnonzero(np.diff(lengths[order])) + 1
        runs = np.split(order, cuts)
    groups = [run[start:start + batch_size] for run in runs for start in range(0, len(run), batch_size)]
    batches = []
    for group in groups:
        t = fixed_length or int(lengths[group].max())
        x = np.full((len(group), t, k), seq.get("pad_value", 0.0), np.float32)
        d = np.zeros((len(group), t), np.int64)
        m = np.zeros((len(group), t), bool)
        for row, p in enumerate(group):
            sel = offsets[p] + thin(int(n_obs[p]), max_length, seq.get("long_series", "evenly"))
            first = t - len(sel) if seq["padding"] == "left" else 0
            x[row, first:first + len(sel)] = scaled[sel]
            d[row, first:first + len(sel)] = doy[sel]
            m[row, first:first + len(sel)] = True
        feeds = {c["inputs"]["values"]: x}
        if c["inputs"].get("doy"):
            feeds[c["inputs"]["doy"]] = d
        if c["inputs"].get("mask"):
            feeds[c["inputs"]["mask"]] = m
        batches.append(feeds)
    return batches, len(pixels)


def main():
    model, chunk_dir, threads, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    c = json.loads(session.get_modelmeta().custom_metadata_map["treesits.contract"])
    shape = [i for i in session.get_inputs() if i.name == c["inputs"]["values"]][0].shape
    fixed_length = shape[1] if isinstance(shape[1], int) else None
    files = sorted(f for f in glob.glob(os.path.join(chunk_dir, "*.arrows")) if not f.endswith(".pred.arrows"))
    batches, pixels = [], 0
    for f in files:
        for batch in ipc.open_stream(open(f, "rb")):
            b, n = pack(pa.Table.from_batches([batch]), c, fixed_length, batch_size)
            batches += b
            pixels += n
    output = [c["output"]["name"]]
    started = time.perf_counter()
    for feeds in batches:
        session.run(output, feeds)
    print(f"{time.perf_counter() - started:.3f} {pixels} {len(batches)}")


if __name__ == "__main__":
    main()
