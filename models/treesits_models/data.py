"""Labelled pixel time series from the synthetic cube, and packing them into model tensors.

Used by training and evaluation alike (and, without torch, by `models/check_fixtures.py`):

1. `make_synthetic` runs `treesits-synth` (cube + truth) and `cube-extract` (Arrow chunks) per tile;
2. `load_samples` reads the chunks and the truth rasters into a flat `Samples` table;
3. `pack` turns a selection of samples into the padded `values`/`doy`/`mask` arrays exactly as
   `predict` does from a contract: long series thinned (`evenly`/`latest`), scaling, padding side.

Only numpy and pyarrow are needed here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_binary(name: str) -> str:
    """`name` from $TREESITS_BIN, the repo's target/release, or PATH."""
    candidates = []
    if os.environ.get("TREESITS_BIN"):
        candidates.append(Path(os.environ["TREESITS_BIN"]) / name)
    candidates.append(REPO_ROOT / "target" / "release" / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} not found in $TREESITS_BIN, target/release or PATH: "
        f"build it with `cargo build --release -p {name}`"
    )


def make_synthetic(out: Path, seed: int, tiles: int, size: int, dates: int, threads: int = 2) -> Path:
    """Synthetic cube + truth under `out/synth`, chunks under `out/chunks/<tile>`; reuses a finished run."""
    out = Path(out)
    done = out / "done.json"
    params = {"seed": seed, "tiles": tiles, "size": size, "dates": dates}
    if done.is_file() and json.loads(done.read_text()) == params:
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    synth = out / "synth"
    subprocess.run(
        [find_binary("treesits-synth"), "--out", str(synth), "--seed", str(seed), "--tiles", str(tiles),
         "--size", str(size), "--dates", str(dates), "--threads", str(threads), "-q"],
        check=True,
    )
    for tile_dir in sorted(p for p in (synth / "cube").iterdir() if p.is_dir()):
        subprocess.run(
            [find_binary("cube-extract"), "--tile", str(tile_dir), "--out-dir",
             str(out / "chunks" / tile_dir.name), "--threads", str(threads), "-q"],
            check=True,
        )
    done.write_text(json.dumps(params))
    return out


def read_truth(tif: Path) -> np.ndarray:
    """A Byte raster as a 2-D uint8 array, through `gdal_translate -of ENVI` (no Python GDAL needed)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "truth.bin"
        subprocess.run(["gdal_translate", "-q", "-of", "ENVI", str(tif), str(raw)], check=True)
        header = {}
        for line in raw.with_suffix(".hdr").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                header[k.strip().lower()] = v.strip()
        if header.get("data type") != "1":
            raise ValueError(f"{tif}: expected a Byte raster (ENVI data type 1), got {header.get('data type')}")
        rows, cols = int(header["lines"]), int(header["samples"])
        return np.fromfile(raw, dtype=np.uint8).reshape(rows, cols)


@dataclasses.dataclass
class Samples:
    """Pixels and their valid observations, flat: observations of pixel i are `offsets[i]:offsets[i+1]`."""

    bands: list[str]
    values: np.ndarray  # int16 [observations, bands], BOA × 10000
    doy: np.ndarray  # int16 [observations], 1..=366
    offsets: np.ndarray  # int64 [pixels + 1]
    label: np.ndarray  # uint8 [pixels], class code (255 = no truth)
    tile: np.ndarray  # int16 [pixels], index into `tiles`
    row: np.ndarray  # uint32 [pixels]
    col: np.ndarray  # uint32 [pixels]
    tiles: list[str]

    def __len__(self) -> int:
        return len(self.label)

    @property
    def n_obs(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, idx: np.ndarray) -> "Samples":
        """The pixels `idx` (in that order), observations copied."""
        idx = np.asarray(idx, dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lengths = ends - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Samples(self.bands, self.values[gather], self.doy[gather], offsets, self.label[idx],
                       self.tile[idx], self.row[idx], self.col[idx], self.tiles)


def day_of_year(days_since_epoch: np.ndarray) -> np.ndarray:
    d = days_since_epoch.astype("datetime64[D]")
    return ((d - d.astype("datetime64[Y]")).astype(np.int64) + 1).astype(np.int16)


def read_chunk(path: Path) -> dict:
    """One time-series chunk file as flat numpy arrays (see docs/formats.md)."""
    with open(path, "rb") as f:
        table = ipc.open_stream(f).read_all().combine_chunks()
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    # Version 2 adds checksums (a `checksum` column, `treesits.metadata_checksum`), which the Rust
    # readers verify; version 3 lets a chunk file hold several batches (column ranges, or runs of their pixels), which
    # `read_all().combine_chunks()` joins; the values read here are the same in all three.
    if meta.get("treesits.format_version") not in ("1", "2", "3"):
        raise ValueError(f"{path}: not a version 1, 2 or 3 treesits time-series chunk")
    bands = meta["treesits.band_names"].split(",")
    date_list = table.column("date").chunk(0)
    offsets = date_list.offsets.to_numpy().astype(np.int64)
    base = offsets[0]
    days = date_list.values.cast("int32").to_numpy()[base:offsets[-1]] if len(table) else np.zeros(0, np.int32)
    values = np.stack(
        [table.column(b).chunk(0).values.to_numpy(zero_copy_only=False)[base:offsets[-1]] for b in bands],
        axis=1,
    ).astype(np.int16) if len(table) else np.zeros((0, len(bands)), np.int16)
    return {
        "bands": bands,
        "tile_id": meta["treesits.tile_id"],
        "row": table.column("row").to_numpy(),
        "col": table.column("col").to_numpy(),
        "offsets": offsets - base,
        "doy": day_of_year(days),
        "values": values,
    }


def load_samples(run_dir: Path) -> Samples:
    """All pixels of a `make_synthetic` run with their truth class."""
    run_dir = Path(run_dir)
    parts = []
    tiles = sorted(p.name for p in (run_dir / "chunks").iterdir() if p.is_dir())
    for t, tile in enumerate(tiles):
        truth = read_truth(run_dir / "synth" / "truth" / f"{tile}_truth.tif")
        for chunk in sorted((run_dir / "chunks" / tile).glob("*.arrows")):
            c = read_chunk(chunk)
            c["label"] = truth[c["row"], c["col"]]
            c["tile"] = np.full(len(c["row"]), t, dtype=np.int16)
            parts.append(c)
    bands = parts[0]["bands"]
    if any(p["bands"] != bands for p in parts):
        raise ValueError(f"{run_dir}: chunks disagree on band names")
    lengths = np.concatenate([np.diff(p["offsets"]) for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Samples(
        bands=bands,
        values=np.concatenate([p["values"] for p in parts]),
        doy=np.concatenate([p["doy"] for p in parts]),
        offsets=offsets,
        label=np.concatenate([p["label"] for p in parts]).astype(np.uint8),
        tile=np.concatenate([p["tile"] for p in parts]),
        row=np.concatenate([p["row"] for p in parts]),
        col=np.concatenate([p["col"] for p in parts]),
        tiles=tiles,
    )


def band_statistics(samples: Samples, scale: float = 1e-4, offset: float = 0.0):
    """Mean and standard deviation per band of `raw · scale + offset` over every observation."""
    x = samples.values.astype(np.float64) * scale + offset
    return x.mean(axis=0), x.std(axis=0)


def select_observations(n: int, max_length: int | None, long_series: str) -> np.ndarray:
    """Which of `n` observations enter the model; `ModelContract::select_observations` in Rust."""
    if max_length is None or n <= max_length:
        return np.arange(n)
    if long_series == "latest":
        return np.arange(n - max_length, n)
    if max_length == 1:
        return np.array([n - 1])
    i = np.arange(max_length)
    return (2 * i * (n - 1) + (max_length - 1)) // (2 * (max_length - 1))


def pack(samples: Samples, contract: dict, idx=None, keep=None, length: int | None = None):
    """Model inputs for pixels `idx`, as `predict` builds them from `contract`.

    `keep` (bool per observation, optional) drops observations first (training augmentation);
    `length` pads to at least that many steps (default: the longest selected series).
    Returns `(values float32 [B,T,bands], doy int64 [B,T], mask bool [B,T])`.
    """
    if idx is None:
        idx = np.arange(len(samples))
    band_idx = [samples.bands.index(b) for b in contract["bands"]]
    s = contract["scaling"]
    nb = len(band_idx)
    mean = np.asarray(s.get("mean") or [0.0] * nb, dtype=np.float64)
    std = np.asarray(s.get("std") or [1.0] * nb, dtype=np.float64)
    seq = contract["sequence"]
    idx = np.asarray(idx, dtype=np.int64)
    b = len(idx)
    starts = samples.offsets[idx]
    lens = samples.offsets[idx + 1] - starts
    pix = np.repeat(np.arange(b), lens)
    obs = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(lens.sum())
    if keep is not None:
        kept = keep[obs]
        obs, pix = obs[kept], pix[kept]
    n = np.bincount(pix, minlength=b)
    pos = np.arange(len(obs)) - np.repeat(np.cumsum(n) - n, n)
    max_length = seq.get("max_length")
    if max_length is not None and (n > max_length).any():
        chosen = np.ones(len(obs), dtype=bool)
        first = np.cumsum(n) - n
        for r in np.flatnonzero(n > max_length):
            chosen[first[r]:first[r] + n[r]] = False
            chosen[first[r] + select_observations(int(n[r]), max_length, seq.get("long_series", "evenly"))] = True
        obs, pix = obs[chosen], pix[chosen]
        n = np.bincount(pix, minlength=b)
        pos = np.arange(len(obs)) - np.repeat(np.cumsum(n) - n, n)
    t = int(max(n.max(initial=0), length or 0, 1))
    step = pos + (t - n[pix] if seq["padding"] == "left" else 0)
    values = np.full((b, t, nb), seq.get("pad_value", 0.0), dtype=np.float32)
    doy = np.zeros((b, t), dtype=np.int64)
    mask = np.zeros((b, t), dtype=bool)
    raw = samples.values[obs][:, band_idx].astype(np.float64)
    values[pix, step] = (((raw * s["scale"] + s.get("offset", 0.0)) - mean) / std).astype(np.float32)
    doy[pix, step] = samples.doy[obs]
    mask[pix, step] = True
    return values, doy, mask
