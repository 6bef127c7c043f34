"""The training table (`sample-extract`'s Parquet file): reading it, splitting it by space, class weights.

The table is the contract between `sample-extract` and training (`docs/formats.md`, "Training table"):
one row per sample with `label`, `x`, `y`, (`plot_id`), `date` (List<Date32>), `sensor` and one
List<Int16> column per band, plus file metadata (`treesits.band_names`, `treesits.classes`, …).

`read_table` turns it into the same flat `data.Samples` that `data.pack` packs exactly as `predict`
does, so a model trained from the table sees the inputs `predict` will give it. `write_table` writes a
table in that schema from cube-extract chunks and a truth raster — a stand-in for `sample-extract` in
tests (it is not the tool; it takes whole chunk rows, it reads no cube).

No torch here: CI's venv has numpy and pyarrow only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import data

FORMAT = "treesits-training-table"
FORMAT_VERSION = "1"

# Colours for classes a table names without a class table (cycled).
_PALETTE = [[31, 94, 49], [200, 80, 40], [120, 200, 60], [20, 60, 110], [178, 140, 60], [230, 30, 60],
            [240, 210, 50], [90, 120, 140], [170, 220, 160], [62, 140, 80], [220, 220, 220]]


class TableError(ValueError):
    pass


@dataclasses.dataclass
class TableSamples(data.Samples):
    """`data.Samples` from a training table, plus what the table says about each sample."""

    x: np.ndarray = None  # float64 [samples], pixel centre in the cube's CRS
    y: np.ndarray = None
    plot_id: np.ndarray | None = None  # object [samples] (str or None), None when the table has no plot_id
    codes: np.ndarray = None  # int32 [samples], the `label` column (class code)
    weight: np.ndarray | None = None
    classes: list = None  # the class table [{"code", "name", "colour"}], ordered by code
    metadata: dict = None  # the file metadata, strings


def _meta(schema: pa.Schema) -> dict:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def _flat_list(column: pa.ChunkedArray, path: Path, name: str):
    """offsets (int64, from 0) and values of a List column, in row order."""
    arr = column.combine_chunks()
    if not pa.types.is_list(arr.type) and not pa.types.is_large_list(arr.type):
        raise TableError(f"{path}: column '{name}' is {arr.type}, expected a list (training table format "
                         f"{FORMAT_VERSION}; regenerate it with sample-extract)")
    if arr.null_count:
        raise TableError(f"{path}: column '{name}' has null rows; regenerate it with sample-extract")
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.slice(offsets[0], offsets[-1] - offsets[0])
    return offsets - offsets[0], values


def read_table(path) -> TableSamples:
    """A training table as `TableSamples` (errors name the file and what to do)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file; write the training table with sample-extract --out {path}")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise TableError(f"{path}: not a readable Parquet file ({e}); give the table sample-extract wrote") from e
    meta = _meta(table.schema)
    if meta.get("treesits.format") != FORMAT:
        raise TableError(f"{path}: not a treesits training table (metadata treesits.format is "
                         f"{meta.get('treesits.format')!r}); write it with sample-extract")
    if meta.get("treesits.format_version") != FORMAT_VERSION:
        raise TableError(f"{path}: training table version {meta.get('treesits.format_version')!r}, this "
                         f"training reads version {FORMAT_VERSION}")
    bands = [b for b in meta.get("treesits.band_names", "").split(",") if b]
    if not bands:
        raise TableError(f"{path}: metadata treesits.band_names is empty")
    need = ["label", "x", "y", "tile_id", "row", "col", "date", *bands]
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise TableError(f"{path}: missing columns {missing}")
    if len(table) == 0:
        raise TableError(f"{path}: the table has no rows (no sample had a valid observation)")

    offsets, dates = _flat_list(table.column("date"), path, "date")
    days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False)
    values = np.empty((len(days), len(bands)), dtype=np.int16)
    for j, b in enumerate(bands):
        o, v = _flat_list(table.column(b), path, b)
        if not np.array_equal(o, offsets):
            raise TableError(f"{path}: column '{b}' and 'date' disagree on the number of observations")
        values[:, j] = v.to_numpy(zero_copy_only=False).astype(np.int16)
    if (np.diff(offsets) == 0).any():
        raise TableError(f"{path}: a row has no observation (sample-extract leaves such samples out)")

    codes = table.column("label").to_numpy(zero_copy_only=False)
    if table.column("label").null_count or codes.min() < 0 or codes.max() > 254:
        raise TableError(f"{path}: labels must be class codes 0..254 without nulls")
    codes = codes.astype(np.int32)
    tile_names = table.column("tile_id").to_pylist()
    tiles = sorted(set(tile_names))
    tile_index = {t: i for i, t in enumerate(tiles)}

    classes = classes_of(meta, codes, table.column("label_name").to_pylist()
                         if "label_name" in table.column_names else None, path)
    plot = None
    if "plot_id" in table.column_names:
        plot = np.array(table.column("plot_id").to_pylist(), dtype=object)
    weight = table.column("weight").to_numpy(zero_copy_only=False) if "weight" in table.column_names else None
    return TableSamples(
        bands=bands, values=values, doy=data.day_of_year(days), offsets=offsets,
        label=np.minimum(codes, 255).astype(np.uint8),
        tile=np.array([tile_index[t] for t in tile_names], dtype=np.int16),
        row=table.column("row").to_numpy().astype(np.uint32), col=table.column("col").to_numpy().astype(np.uint32),
        tiles=tiles, x=table.column("x").to_numpy().astype(np.float64),
        y=table.column("y").to_numpy().astype(np.float64), plot_id=plot, codes=codes, weight=weight,
        classes=classes, metadata=meta,
    )


def classes_of(meta: dict, codes: np.ndarray, names, path) -> list:
    """The class table: `treesits.classes` when given (it must hold every label), else from the labels."""
    raw = meta.get("treesits.classes")
    if raw:
        try:
            classes = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TableError(f"{path}: metadata treesits.classes is not JSON ({e})") from e
        known = {int(c["code"]) for c in classes}
        unknown = sorted(set(np.unique(codes).tolist()) - known)
        if unknown:
            raise TableError(f"{path}: labels {unknown} are not in the table's treesits.classes")
        return sorted(({"code": int(c["code"]), "name": str(c["name"]), "colour": [int(v) for v in c["colour"]]}
                       for c in classes), key=lambda c: c["code"])
    first = {}
    for i, code in enumerate(codes.tolist()):
        if code not in first:
            first[code] = names[i] if names and names[i] else f"class {code}"
    return [{"code": c, "name": first[c], "colour": _PALETTE[k % len(_PALETTE)]}
            for k, c in enumerate(sorted(first))]


def group_keys(x: np.ndarray, y: np.ndarray, plot_id, block_size: float) -> np.ndarray:
    """One key per sample: its plot when it has one, else its spatial block (`block_size` metres)."""
    bx = np.floor(x / block_size).astype(np.int64)
    by = np.floor(y / block_size).astype(np.int64)
    keys = np.array([f"block {a} {b}" for a, b in zip(bx, by)], dtype=object)
    if plot_id is not None:
        has = np.array([p is not None and p != "" for p in plot_id], dtype=bool)
        keys[has] = np.array([f"plot {p}" for p in plot_id[has]], dtype=object)
    return keys


def near(x_from, y_from, x_to, y_to, distance: float) -> np.ndarray:
    """For each `from` point: is some `to` point within `distance` (Euclidean, metres)?

    Grid hashing with cells of `distance`, then exact distances only to the 3 × 3 cells around."""
    out = np.zeros(len(x_from), dtype=bool)
    if distance <= 0 or len(x_to) == 0 or len(x_from) == 0:
        return out
    cx, cy = np.floor(x_to / distance).astype(np.int64), np.floor(y_to / distance).astype(np.int64)
    cells: dict = {}
    for i, key in enumerate(zip(cx.tolist(), cy.tolist())):
        cells.setdefault(key, []).append(i)
    fx, fy = np.floor(x_from / distance).astype(np.int64), np.floor(y_from / distance).astype(np.int64)
    for i in range(len(x_from)):
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                hit = cells.get((int(fx[i]) + dx, int(fy[i]) + dy))
                if hit is not None:
                    d2 = (x_to[hit] - x_from[i]) ** 2 + (y_to[hit] - y_from[i]) ** 2
                    if (d2 <= distance * distance).any():
                        out[i] = True
                        break
            if out[i]:
                break
    return out


def blocked_split(x, y, plot_id=None, block_size: float = 1000.0, val_fraction: float = 0.2, seed: int = 0,
                  buffer: float = 0.0):
    """Spatially blocked train / validation split: `(train_idx, val_idx, dropped_idx)`.

    Samples are grouped by plot (`plot_id`, when present and not empty) or else by square spatial blocks
    of `block_size` metres; whole groups go to validation, drawn in a seeded random order until at least
    `val_fraction` of the samples are held out (at least one group, never all). Training samples closer
    than `buffer` metres to a validation sample are dropped (neither side), so neighbouring pixels across
    a group border never sit on both sides.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if block_size <= 0:
        raise ValueError(f"--block-size must be positive, got {block_size}")
    keys = group_keys(x, y, plot_id, block_size)
    uniq, inverse = np.unique(keys.astype(str), return_inverse=True)
    if len(uniq) < 2:
        raise ValueError(f"all {len(x)} samples fall into one {'plot or ' if plot_id is not None else ''}block "
                         f"of {block_size:g} m: give a smaller --block-size")
    sizes = np.bincount(inverse, minlength=len(uniq))
    order = np.random.default_rng(seed).permutation(len(uniq))
    target = val_fraction * len(x)
    chosen, held = [], 0
    for g in order:
        if held >= target or len(chosen) == len(uniq) - 1:
            break
        chosen.append(g)
        held += sizes[g]
    is_val = np.isin(inverse, chosen)
    val_idx = np.flatnonzero(is_val)
    train_idx = np.flatnonzero(~is_val)
    close = near(x[train_idx], y[train_idx], x[val_idx], y[val_idx], buffer)
    return train_idx[~close], val_idx, train_idx[close]


def class_weights(labels: np.ndarray, num_classes: int, mode: str = "balanced") -> np.ndarray:
    """Per class index: `balanced` = n / (classes present · count), 0 for absent classes; `none` = 1."""
    if mode == "none":
        return np.ones(num_classes, dtype=np.float64)
    if mode != "balanced":
        raise ValueError(f"--class-weights must be balanced or none, got {mode!r}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = (counts > 0).sum()
    w = np.zeros(num_classes, dtype=np.float64)
    w[counts > 0] = len(labels) / (present * counts[counts > 0])
    return w


# -- a stand-in writer for tests (the schema of sample-extract's table) --------------------------------

def write_table(path, chunks: list, truth: dict, rows: dict, classes=None, plot_ids: dict | None = None,
                cube: str = "synthetic"):
    """Write a training table from chunk files: every pixel listed in `rows[tile]` (a set of (row, col)).

    `chunks`: chunk paths; `truth[tile]`: 2-D class codes (pixel centres from the chunks' geotransform);
    `plot_ids[(tile, row, col)]`: plot id (the column is written only when given). Rows come in chunk
    order; each row's date, sensor and band lists are the chunk's for that pixel, unchanged.
    """
    import pyarrow.ipc as ipc

    out = {k: [] for k in ("sample_id", "plot_id", "label", "label_name", "tile_id", "row", "col", "x", "y",
                           "n_obs", "date", "sensor")}
    bands = None
    names = {c["code"]: c["name"] for c in (classes or [])}
    band_vals: dict = {}
    meta_in = {}
    for chunk in chunks:
        with open(chunk, "rb") as f:
            t = ipc.open_stream(f).read_all()
        meta_in = _meta(t.schema)
        tile = meta_in["treesits.tile_id"]
        b = meta_in["treesits.band_names"].split(",")
        if bands is None:
            bands = b
            band_vals = {k: [] for k in bands}
        r, c = t.column("row").to_pylist(), t.column("col").to_pylist()
        want = rows.get(tile, set())
        for i, (ri, ci) in enumerate(zip(r, c)):
            if (ri, ci) not in want:
                continue
            dates = t.column("date")[i].as_py()
            if not dates:
                continue
            code = int(truth[tile][ri, ci])
            x0, dx, _, y0, _, dy = (float(v) for v in meta_in["treesits.geotransform"].split(","))
            out["sample_id"].append(len(out["sample_id"]))
            out["plot_id"].append((plot_ids or {}).get((tile, ri, ci)))
            out["label"].append(code)
            out["label_name"].append(names.get(code, f"class {code}"))
            out["tile_id"].append(tile)
            out["row"].append(ri)
            out["col"].append(ci)
            out["x"].append(x0 + (ci + 0.5) * dx)
            out["y"].append(y0 + (ri + 0.5) * dy)
            out["n_obs"].append(len(dates))
            out["date"].append(dates)
            out["sensor"].append(t.column("sensor")[i].as_py())
            for k in bands:
                band_vals[k].append(t.column(k)[i].as_py())
    fields = [pa.field("sample_id", pa.int64(), nullable=False)]
    arrays = [pa.array(out["sample_id"], pa.int64())]
    if plot_ids is not None:
        fields.append(pa.field("plot_id", pa.utf8()))
        arrays.append(pa.array(out["plot_id"], pa.utf8()))
    cols = [("label", pa.int32()), ("label_name", pa.utf8()), ("tile_id", pa.utf8()), ("row", pa.uint32()),
            ("col", pa.uint32()), ("x", pa.float64()), ("y", pa.float64()), ("n_obs", pa.uint32()),
            ("date", pa.list_(pa.date32())), ("sensor", pa.list_(pa.uint8()))]
    for name, typ in cols:
        fields.append(pa.field(name, typ, nullable=False))
        arrays.append(pa.array(out[name], typ))
    for k in bands:
        fields.append(pa.field(k, pa.list_(pa.int16()), nullable=False))
        arrays.append(pa.array(band_vals[k], pa.list_(pa.int16())))
    meta = {
        "treesits.format": FORMAT, "treesits.format_version": FORMAT_VERSION, "treesits.cube": cube,
        "treesits.crs_wkt": meta_in.get("treesits.crs_wkt", ""), "treesits.band_names": ",".join(bands),
        "treesits.sensors": meta_in.get("treesits.sensors", ""), "treesits.scale": "10000",
        "treesits.nodata": meta_in.get("treesits.nodata", "-9999"),
        "treesits.date_start": meta_in.get("treesits.date_start", ""),
        "treesits.date_end": meta_in.get("treesits.date_end", ""),
        "treesits.qai_screen": meta_in.get("treesits.qai_screen", ""), "treesits.samples": "test",
        "treesits.label_field": "class", "treesits.software_version": "test",
    }
    if classes:
        meta["treesits.classes"] = json.dumps(classes)
    schema = pa.schema(fields, metadata=meta)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, compression="zstd")
    return len(out["sample_id"])
