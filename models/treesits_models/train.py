"""Train the reference LSTM and Transformer on the synthetic cube, export them, evaluate them held out.

    python -m treesits_models.train --out-dir fixtures          (from models/, with the torch venv)

With `--table FILE.parquet` it trains from a training table instead (`sample-extract`'s output; see
`train_table.py` and `python -m treesits_models.train --table x --help`).

1. Runs `treesits-synth` + `cube-extract` for the training seed and the held-out seed (cached in
   `--work`), reads truth and chunks (`data.py`).
2. Computes mean/std per band over the training observations (they go into the contract).
3. Trains each architecture with observation dropout (each pixel keeps a random 10–100 % of its
   observations per epoch), so the models work for sparse and dense series.
   Both models ignore padding exactly, so no padding augmentation is needed.
4. Exports `<arch>.onnx` (+ `<arch>.contract.json`) and checks onnxruntime == torch.
5. Evaluates the ONNX files with onnxruntime on every labelled pixel with ≥ 1 observation of the
   held-out seed (also with other `--dates`), printing overall and per-class accuracy; writes
   `<arch>.metrics.json` and `<arch>.pt` (state_dict + hyper-parameters) into `--work`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data
from .architectures import build
from .contract import SENTINEL2_BANDS, TRUTH_CLASSES, make_contract, to_json
from .export import export

DEFAULT_HPARAMS = {
    "lstm": dict(embed_size=32, hidden_size=64, num_layers=2, bidirectional=False, head_hidden=128,
                 dropout=0.2),
    "transformer": dict(d_model=32, nhead=4, num_layers=2, dim_feedforward=128, head_hidden=128,
                        dropout=0.0, head_dropout=0.2),
}
# LSTM: left padding, 64 steps (about five years of 10-day revisits once clouds are removed); the
# Transformer's cost grows with T², its attention handles longer series: 128. Longer series are
# thinned evenly (first and last kept), so a dense series still spans the whole season.
DEFAULT_EPOCHS = {"lstm": 6, "transformer": 4}
SEQUENCE = {
    "lstm": dict(max_length=64, padding="left", long_series="evenly"),
    "transformer": dict(max_length=128, padding="right", long_series="evenly"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def contract_for(arch: str, model: nn.Module, mean, std, description: str, model_id: str) -> dict:
    return make_contract(
        model_id=model_id, description=description, bands=SENTINEL2_BANDS, mean=list(mean),
        std=list(std), classes=TRUTH_CLASSES, doy_dim=model.doy_dim if arch == "transformer" else None,
        use_mask=arch == "transformer", **SEQUENCE[arch],
    )


def labelled(samples: data.Samples) -> np.ndarray:
    """Pixels with a truth class and at least one valid observation."""
    return np.flatnonzero((samples.label < len(TRUTH_CLASSES)) & (samples.n_obs >= 1))


def augment_keep(samples: data.Samples, idx: np.ndarray, rng: np.random.Generator,
                 low: float = 0.1) -> np.ndarray:
    """Per observation: keep it? Each pixel keeps a random share in [low, 1] (at least one observation)."""
    keep = np.ones(len(samples.doy), dtype=bool)
    n = samples.n_obs[idx]
    share = rng.uniform(low, 1.0, size=len(idx))
    starts = samples.offsets[idx]
    obs = np.repeat(starts, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    keep[obs] = rng.random(len(obs)) < np.repeat(share, n)
    # guarantee one survivor per pixel: a random observation of each is always kept
    keep[starts + (rng.random(len(idx)) * n).astype(np.int64)] = True
    return keep


def model_inputs(arch: str, packed) -> tuple:
    values, doy, mask = (torch.from_numpy(a) for a in packed)
    return (values,) if arch == "lstm" else (values, doy, mask)


def train_one(arch: str, samples: data.Samples, train_idx, val_idx, contract: dict, args,
              hparams: dict, epochs: int) -> nn.Module:
    torch.manual_seed(args.torch_seed)
    rng = np.random.default_rng(args.torch_seed)
    model = build(arch, num_bands=len(SENTINEL2_BANDS), num_classes=len(TRUTH_CLASSES), **hparams)
    log(f"{arch}: {sum(p.numel() for p in model.parameters())} parameters, {len(train_idx)} training pixels")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = epochs * ((len(train_idx) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss()
    labels = torch.from_numpy(samples.label.astype(np.int64))
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        order = rng.permutation(train_idx)
        keep = augment_keep(samples, order, rng)
        total, correct, loss_sum = 0, 0, 0.0
        for b in range(0, len(order), args.batch_size):
            idx = order[b:b + args.batch_size]
            # no padding augmentation: both models ignore padding exactly (see architectures.py)
            x = model_inputs(arch, data.pack(samples, contract, idx, keep=keep))
            y = labels[idx]
            logits = model(*x)
            loss = loss_fn(logits, y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            total += len(idx)
        val_acc = accuracy_torch(model, arch, samples, val_idx, contract)
        log(f"{arch} epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f}, train acc "
            f"{correct / total:.4f} (augmented), validation acc {val_acc:.4f}, {time.time() - t0:.0f} s")
    return model.eval()


@torch.no_grad()
def accuracy_torch(model, arch, samples, idx, contract, batch=2048) -> float:
    model.eval()
    hits = 0
    for b in range(0, len(idx), batch):
        i = idx[b:b + batch]
        pred = model(*model_inputs(arch, data.pack(samples, contract, i))).argmax(1).numpy()
        hits += int((pred == samples.label[i]).sum())
    return hits / max(len(idx), 1)


def evaluate_onnx(path: Path, contract: dict, samples: data.Samples, batch: int = 4096,
                  length: int | None = None) -> dict:
    """Overall and per-class accuracy of the ONNX model (onnxruntime, CPU) on every labelled pixel.

    Batches are padded to their longest series, or to `length` steps."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    idx = labelled(samples)
    pred = np.empty(len(idx), dtype=np.int64)
    for b in range(0, len(idx), batch):
        i = idx[b:b + batch]
        values, doy, mask = data.pack(samples, contract, i, length=length)
        feed = {contract["inputs"]["values"]: values}
        if contract["inputs"].get("doy"):
            feed[contract["inputs"]["doy"]] = doy
        if contract["inputs"].get("mask"):
            feed[contract["inputs"]["mask"]] = mask
        feed = {k: v for k, v in feed.items() if k in names}
        probs = session.run([contract["output"]["name"]], feed)[0]
        pred[b:b + batch] = probs.argmax(1)
    codes = np.array([c["code"] for c in contract["classes"]])
    truth = samples.label[idx]
    predicted = codes[pred]
    per_class = {}
    for c in contract["classes"]:
        sel = truth == c["code"]
        per_class[c["name"]] = {"pixels": int(sel.sum()),
                                "accuracy": float((predicted[sel] == c["code"]).mean()) if sel.any() else None}
    return {"pixels": int(len(idx)), "overall_accuracy": float((predicted == truth).mean()),
            "per_class": per_class}


def print_metrics(name: str, m: dict) -> None:
    print(f"{name}: overall accuracy {m['overall_accuracy']:.4f} on {m['pixels']} held-out pixels")
    for cls, v in m["per_class"].items():
        acc = "-" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        print(f"  {cls:16s} {acc:>7s}  ({v['pixels']} px)")


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--table" or a.startswith("--table=") for a in args):
        # training from a training table (sample-extract's Parquet file): train_table.py
        from .train_table import main as main_table

        return main_table(args)
    p = argparse.ArgumentParser(prog="python -m treesits_models.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="lstm,transformer", help="architectures to train (default: both)")
    p.add_argument("--out-dir", type=Path, required=True, help="where <arch>.onnx and <arch>.contract.json go")
    p.add_argument("--work", type=Path, default=data.REPO_ROOT / "out" / "models-train",
                   help="cache of synthetic cubes and chunks, checkpoints, metrics (default: out/models-train)")
    p.add_argument("--train-seed", type=int, default=1, help="treesits-synth seed of the training cube (default 1)")
    p.add_argument("--train-tiles", type=int, default=4, help="tiles of the training cube (default 4)")
    p.add_argument("--train-dates", type=int, default=36, help="acquisitions in the training cube (default 36)")
    p.add_argument("--eval-seed", type=int, default=2, help="seed of the held-out cube (default 2)")
    p.add_argument("--eval-tiles", type=int, default=2, help="tiles of the held-out cube (default 2)")
    p.add_argument("--eval-dates", default="24,12,36",
                   help="acquisitions of the held-out cubes, comma-separated; the first is the headline (default 24,12,36)")
    p.add_argument("--size", type=int, default=200, help="tile size in pixels (default 200)")
    p.add_argument("--train-pixels", type=int, default=24000, help="training pixels drawn from the training cube (default 24000)")
    p.add_argument("--epochs", type=int, help="epochs of every architecture (default: LSTM 6, Transformer 4)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule (default 3e-3)")
    p.add_argument("--torch-seed", type=int, default=0, help="seed of weights, shuffling and augmentation (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch and tool threads (default 2)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    eval_dates = [int(d) for d in args.eval_dates.split(",")]

    log(f"synthetic training cube: seed {args.train_seed}, {args.train_tiles} tiles, {args.train_dates} dates")
    train_dir = data.make_synthetic(args.work / f"seed{args.train_seed}-t{args.train_tiles}-d{args.train_dates}",
                                    args.train_seed, args.train_tiles, args.size, args.train_dates, args.threads)
    samples = data.load_samples(train_dir)
    mean, std = data.band_statistics(samples)
    log(f"{len(samples)} pixels, {len(samples.doy)} observations; band mean {np.round(mean, 4).tolist()}")
    rng = np.random.default_rng(args.torch_seed)
    pool = rng.permutation(labelled(samples))
    n_val = min(4000, len(pool) // 10)
    val_idx, train_idx = pool[:n_val], pool[n_val:n_val + args.train_pixels]

    held_out = {}
    for d in eval_dates:
        log(f"held-out cube: seed {args.eval_seed}, {args.eval_tiles} tiles, {d} dates")
        held_out[d] = data.load_samples(data.make_synthetic(
            args.work / f"seed{args.eval_seed}-t{args.eval_tiles}-d{d}", args.eval_seed, args.eval_tiles,
            args.size, d, args.threads))

    for arch in archs:
        hparams = DEFAULT_HPARAMS[arch]
        epochs = args.epochs or DEFAULT_EPOCHS[arch]
        probe = build(arch, num_bands=len(SENTINEL2_BANDS), num_classes=len(TRUTH_CLASSES), **hparams)
        command = "python -m treesits_models.train " + " ".join(argv if argv is not None else sys.argv[1:])
        description = (
            f"treesits reference {arch} ({json.dumps(hparams, sort_keys=True)}), trained on the synthetic "
            f"cube (treesits-synth seed {args.train_seed}, {args.train_tiles} tiles of {args.size} px, "
            f"{args.train_dates} dates, {len(train_idx)} pixels, torch seed {args.torch_seed}, "
            f"{epochs} epochs) with treesits_models.train; for tests and demos only"
        )
        contract = contract_for(arch, probe, mean, std, description, f"treesits-synth-{arch}-1")
        model = train_one(arch, samples, train_idx, val_idx, contract, args, hparams, epochs)
        out = args.out_dir / f"{arch}.onnx"
        worst = export(model, contract, out)
        (args.out_dir / f"{arch}.contract.json").write_text(to_json(contract))
        torch.save({"arch": arch, "hparams": model.hparams, "state_dict": model.state_dict()},
                   args.work / f"{arch}.pt")
        log(f"{arch}: wrote {out} ({out.stat().st_size} bytes), onnxruntime vs torch max |diff| {worst:.2e}")
        metrics = {"arch": arch, "file": out.name, "bytes": out.stat().st_size,
                   "parameters": sum(p.numel() for p in model.parameters()), "hparams": hparams,
                   "command": command, "train_seed": args.train_seed, "eval_seed": args.eval_seed,
                   "torch_seed": args.torch_seed, "epochs": epochs, "train_pixels": int(len(train_idx)),
                   "held_out": {}}
        for d, s in held_out.items():
            m = evaluate_onnx(out, contract, s)
            metrics["held_out"][f"{d}_dates"] = m
            print_metrics(f"{arch} held-out seed {args.eval_seed}, {d} dates", m)
        # predict may pad every batch to max_length: the answer must not change
        d = eval_dates[0]
        first = held_out[d].subset(labelled(held_out[d])[:8000])
        m = evaluate_onnx(out, contract, first, batch=256, length=contract["sequence"]["max_length"])
        metrics["held_out"][f"{d}_dates_padded_to_max_length"] = m
        print_metrics(f"{arch} held-out seed {args.eval_seed}, {d} dates, padded to max_length", m)
        (args.work / f"{arch}.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
