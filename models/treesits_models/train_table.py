"""Train a model from a training table (`sample-extract`'s Parquet file), export it, report on held-out blocks.

    python -m treesits_models.train --table samples.parquet --arch lstm --out-dir model/

1. Reads the table (`table.read_table`): band order = `treesits.band_names`, classes = `treesits.classes`
   (or the labels' codes and names when the table has no class table).
2. Splits it spatially (`table.blocked_split`): whole plots (`plot_id`) or whole square blocks of
   `--block-size` metres go to validation, drawn with `--seed`; training samples within `--buffer` metres of
   a validation sample are dropped, so no two neighbouring pixels sit on both sides.
3. Scaling: mean and standard deviation per band over the training samples' observations (into the contract).
4. Trains with class weights (`--class-weights balanced`: inverse class frequency), the table's `weight`
   column when present, observation dropout (each sample keeps a random 10–100 % of its observations per
   epoch), and early stopping: the weights of the epoch with the lowest validation loss are kept, training
   stops `--patience` epochs after it.
5. Exports `<arch>.onnx` with its contract (+ `<arch>.contract.json`), checked against torch by onnxruntime.
6. Writes `report.json` and `report.md` (overall accuracy, kappa, per-class precision / recall / F1 and the
   confusion matrix on the held-out blocks, computed by onnxruntime from the exported file with inputs
   packed as `predict` packs them) and `learning_curve.png` (losses and validation accuracy per epoch).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import data
from . import table as tbl
from .contract import make_contract, to_json

DEFAULT_HPARAMS = {
    "lstm": dict(embed_size=32, hidden_size=64, num_layers=2, bidirectional=False, head_hidden=128, dropout=0.2),
    "transformer": dict(d_model=32, nhead=4, num_layers=2, dim_feedforward=128, head_hidden=128, dropout=0.0,
                        head_dropout=0.2),
    "tempcnn": dict(max_length=48, doy_dim=8, filters=32, kernel_size=5, dense=128, dropout=0.2),
}
# Every architecture here ignores padding exactly (see architectures.py), so predict may pad batches.
SEQUENCE = {
    "lstm": dict(max_length=64, padding="left", long_series="evenly"),
    "transformer": dict(max_length=128, padding="right", long_series="evenly"),
    "tempcnn": dict(max_length=48, padding="right", long_series="evenly"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m treesits_models.train --table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, required=True, help="the training table (Parquet) sample-extract wrote")
    p.add_argument("--arch", choices=sorted(DEFAULT_HPARAMS), default="lstm", help="architecture (default lstm)")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="where <arch>.onnx, <arch>.contract.json, report.json, report.md, learning_curve.png go")
    p.add_argument("--block-size", type=float, default=1000.0, metavar="METRES",
                   help="side of the square spatial blocks for samples without a plot id (default 1000)")
    p.add_argument("--buffer", type=float, default=None, metavar="METRES",
                   help="training samples closer than this to a validation sample are dropped "
                   "(default: 3 pixels of the table's grid, 30 m on a 10 m cube)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of samples held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, weights, shuffling, augmentation (default 0)")
    p.add_argument("--epochs", type=int, default=60, help="most epochs (default 60)")
    p.add_argument("--patience", type=int, default=8,
                   help="stop after this many epochs without a lower validation loss (default 8)")
    p.add_argument("--class-weights", choices=["balanced", "none"], default="balanced",
                   help="loss weights per class: balanced = inverse class frequency (default), none")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--model-id", default=None, help="the contract's model_id (default treesits-<arch>-<table name>)")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.patience < 1 or a.batch_size < 1:
        p.error("--epochs, --patience and --batch-size must be at least 1")
    return a


def pixel_size(s: tbl.TableSamples) -> float:
    """The grid spacing, from samples of one tile (pixel centres are whole pixels apart); 10 m by default."""
    for t in range(len(s.tiles)):
        sel = s.tile == t
        if sel.sum() >= 2:
            dx = np.abs(np.diff(s.x[sel])) / np.maximum(np.abs(np.diff(s.col[sel].astype(np.int64))), 1)
            dx = dx[np.diff(s.col[sel].astype(np.int64)) != 0]
            if len(dx):
                return float(np.median(dx))
    return 10.0


def confusion(truth: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (truth, pred), 1)
    return m


def metrics(cm: np.ndarray, classes: list) -> dict:
    """Overall accuracy, Cohen's kappa, per-class precision / recall / F1 (rows = reference)."""
    n = cm.sum()
    diag = np.diag(cm).astype(np.float64)
    oa = float(diag.sum() / n) if n else None
    pe = float((cm.sum(0) * cm.sum(1)).sum() / n**2) if n else None
    kappa = float((oa - pe) / (1 - pe)) if n and pe < 1 else None
    per = []
    for i, c in enumerate(classes):
        ref, mapped = int(cm[i].sum()), int(cm[:, i].sum())
        p = float(diag[i] / mapped) if mapped else None
        r = float(diag[i] / ref) if ref else None
        f1 = float(2 * p * r / (p + r)) if p is not None and r is not None and p + r > 0 else None
        per.append({"code": c["code"], "name": c["name"], "precision": p, "recall": r, "f1": f1,
                    "reference_samples": ref, "predicted_samples": mapped})
    return {"samples": int(n), "overall_accuracy": oa, "kappa": kappa, "per_class": per,
            "confusion_matrix": cm.tolist()}


def predict_onnx(path: Path, contract: dict, samples, idx, batch: int = 2048) -> np.ndarray:
    """Class indices (into the contract's classes) for samples `idx`, by onnxruntime from the exported file."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = np.empty(len(idx), dtype=np.int64)
    for b in range(0, len(idx), batch):
        i = idx[b:b + batch]
        values, doy, mask = data.pack(samples, contract, i)
        feed = {contract["inputs"]["values"]: values}
        if contract["inputs"].get("doy"):
            feed[contract["inputs"]["doy"]] = doy
        if contract["inputs"].get("mask"):
            feed[contract["inputs"]["mask"]] = mask
        out[b:b + batch] = session.run([contract["output"]["name"]], feed)[0].argmax(1)
    return out


def learning_curve(history: list, best_epoch: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(ep, [h["train_loss"] for h in history], label="training loss", color="tab:blue")
    ax.plot(ep, [h["val_loss"] for h in history], label="validation loss", color="tab:orange")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (class-weighted)")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["val_accuracy"] for h in history], label="validation accuracy", color="tab:green")
    ax2.set_ylabel("validation accuracy")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def fmt(v, d=3):
    return "-" if v is None else f"{v:.{d}f}"


def report_md(r: dict) -> str:
    m = r["validation"]
    lines = [
        f"# Training report: {r['arch']} from {r['table']}", "",
        f"Held out: {m['samples']} samples in {r['split']['validation_groups']} {r['split']['grouped_by']} "
        f"(seed {r['seed']}); {r['split']['training']} training samples, {r['split']['dropped_in_buffer']} "
        f"dropped within {r['split']['buffer_m']:g} m of a validation sample.", "",
        f"Epochs: {len(r['history'])} (kept epoch {r['best_epoch']}, early stopping patience {r['patience']}), "
        f"{r['seconds']:.0f} s. Class weights: {r['class_weights_mode']}.", "",
        f"**Overall accuracy {fmt(m['overall_accuracy'])}**, kappa {fmt(m['kappa'])} "
        "(on the held-out blocks, onnxruntime on the exported model).", "",
        "| code | class | precision | recall | F1 | reference | predicted |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in m["per_class"]:
        lines.append(f"| {c['code']} | {c['name']} | {fmt(c['precision'])} | {fmt(c['recall'])} | {fmt(c['f1'])} | "
                     f"{c['reference_samples']} | {c['predicted_samples']} |")
    codes = [str(c["code"]) for c in m["per_class"]]
    lines += ["", "Confusion matrix (rows: reference, columns: predicted; class codes):", "",
              "| | " + " | ".join(codes) + " |", "| ---: |" + " ---: |" * len(codes)]
    for code, row in zip(codes, m["confusion_matrix"]):
        lines.append(f"| **{code}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![learning curve](learning_curve.png)", ""]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def train(args) -> dict:
    import torch
    from torch import nn

    from .architectures import build
    from .export import export
    from .train import augment_keep

    started = time.time()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    s = tbl.read_table(args.table)
    classes = s.classes
    code_to_index = {c["code"]: i for i, c in enumerate(classes)}
    y_all = np.array([code_to_index[int(c)] for c in s.codes], dtype=np.int64)
    buffer = args.buffer if args.buffer is not None else 3 * pixel_size(s)
    train_idx, val_idx, dropped = tbl.blocked_split(s.x, s.y, s.plot_id, args.block_size, args.val_fraction,
                                                    args.seed, buffer)
    has_plots = s.plot_id is not None and any(p not in (None, "") for p in s.plot_id)
    groups = tbl.group_keys(s.x[val_idx], s.y[val_idx], s.plot_id[val_idx] if s.plot_id is not None else None,
                            args.block_size)
    log(f"{args.table}: {len(s)} samples, {len(classes)} classes, bands {','.join(s.bands)}; "
        f"split by {'plot' if has_plots else f'{args.block_size:g} m blocks'}: {len(train_idx)} training, "
        f"{len(val_idx)} validation, {len(dropped)} dropped within {buffer:g} m")
    if len(train_idx) == 0:
        raise SystemExit(f"train: error: no training sample left in {args.table}: lower --val-fraction or --buffer")

    mean, std = data.band_statistics(s.subset(train_idx))
    std = np.where(std > 0, std, 1.0)
    weights = tbl.class_weights(y_all[train_idx], len(classes), args.class_weights)
    hparams = dict(DEFAULT_HPARAMS[args.arch])
    model = build(args.arch, num_bands=len(s.bands), num_classes=len(classes), **hparams)
    name = args.table.name
    contract = make_contract(
        model_id=args.model_id or f"treesits-{args.arch}-{Path(name).stem}",
        description=(f"treesits {args.arch} ({json.dumps(hparams, sort_keys=True)}) trained from the training "
                     f"table {name} ({len(train_idx)} samples, seed {args.seed}) with treesits_models.train"),
        bands=s.bands, mean=list(mean), std=list(std), classes=classes,
        doy_dim=model.doy_dim if args.arch != "lstm" else None, use_mask=args.arch != "lstm",
        ignores_padding=True, **SEQUENCE[args.arch],
    )

    def inputs(packed):
        values, doy, mask = (torch.from_numpy(a) for a in packed)
        return (values,) if args.arch == "lstm" else (values, doy, mask)

    sample_w = torch.from_numpy(s.weight.astype(np.float32)) if s.weight is not None else None
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32), reduction="none")
    labels = torch.from_numpy(y_all)
    cw = torch.tensor(weights, dtype=torch.float32)

    def batch_loss(logits, idx):
        per = loss_fn(logits, labels[idx])
        w = cw[labels[idx]]
        if sample_w is not None:
            per, w = per * sample_w[idx], w * sample_w[idx]
        return per.sum() / w.sum().clamp(min=1e-12)

    @torch.no_grad()
    def evaluate(idx):
        model.eval()
        loss, hits, wsum = 0.0, 0, 0.0
        for b in range(0, len(idx), 1024):
            i = idx[b:b + 1024]
            logits = model(*inputs(data.pack(s, contract, i)))
            w = cw[labels[i]]
            loss += float(loss_fn(logits, labels[i]).sum())
            wsum += float(w.sum())
            hits += int((logits.argmax(1) == labels[i]).sum())
        return loss / max(wsum, 1e-12), hits / max(len(idx), 1)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    history, best, best_state, best_epoch, waited = [], float("inf"), None, 0, 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.time()
        order = rng.permutation(train_idx)
        keep = augment_keep(s, order, rng)
        total, loss_sum = 0, 0.0
        for b in range(0, len(order), args.batch_size):
            idx = order[b:b + args.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            loss = batch_loss(model(*inputs(data.pack(s, contract, idx, keep=keep))), idx)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_sum += loss.item() * len(idx)
            total += len(idx)
        val_loss, val_acc = evaluate(val_idx)
        history.append({"epoch": epoch, "train_loss": loss_sum / max(total, 1), "val_loss": val_loss,
                        "val_accuracy": val_acc, "seconds": time.time() - t0})
        improved = val_loss < best
        if improved:
            best, best_state, best_epoch, waited = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            waited += 1
        log(f"{args.arch} epoch {epoch}: training loss {history[-1]['train_loss']:.4f}, validation loss "
            f"{val_loss:.4f}, validation accuracy {val_acc:.4f}{' *' if improved else ''}")
        if waited >= args.patience:
            log(f"early stop: no lower validation loss for {args.patience} epochs; keeping epoch {best_epoch}")
            break
    model.load_state_dict(best_state)
    model.eval()

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{args.arch}.onnx"
    worst = export(model, contract, onnx_path)
    write_atomic(out / f"{args.arch}.contract.json", to_json(contract))
    torch.save({"arch": args.arch, "hparams": model.hparams, "state_dict": model.state_dict()},
               out / f"{args.arch}.pt")
    pred = predict_onnx(onnx_path, contract, s, val_idx)
    m = metrics(confusion(y_all[val_idx], pred, len(classes)), classes)
    report = {
        "arch": args.arch, "table": str(args.table), "onnx": onnx_path.name, "contract": f"{args.arch}.contract.json",
        "onnx_vs_torch_max_abs_diff": worst, "seed": args.seed, "hparams": hparams, "bands": s.bands,
        "classes": classes, "class_weights_mode": args.class_weights, "class_weights": weights.tolist(),
        "split": {"grouped_by": "plots" if has_plots else f"blocks of {args.block_size:g} m",
                  "block_size_m": args.block_size, "buffer_m": buffer, "val_fraction": args.val_fraction,
                  "training": int(len(train_idx)), "validation": int(len(val_idx)),
                  "dropped_in_buffer": int(len(dropped)), "validation_groups": int(len(set(groups.tolist())))},
        "scaling": contract["scaling"], "epochs_max": args.epochs, "patience": args.patience,
        "best_epoch": best_epoch, "stopped_early": len(history) < args.epochs, "history": history,
        "validation": m, "seconds": time.time() - started,
    }
    learning_curve(history, best_epoch, out / "learning_curve.png",
                   f"{args.arch} from {name}: validation = {len(val_idx)} held-out samples")
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "report.md", report_md(report))
    log(f"wrote {onnx_path} (onnxruntime vs torch {worst:.1e}); held-out overall accuracy "
        f"{fmt(m['overall_accuracy'])}, kappa {fmt(m['kappa'])}; report {out / 'report.md'}")
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except (tbl.TableError, ValueError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
