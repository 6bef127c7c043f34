"""Training from the table, the parts without torch: reading, packing, the spatial split, class weights.

Run: python -m pytest tests/train (the repo's .venv: numpy, pyarrow, onnxruntime; binaries for the
table tests from $TREESITS_BIN, target/release or PATH).
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table

from treesits_models import data, table
from treesits_models.contract import TRUTH_CLASSES


def grid_points(n_side=60, spacing=10.0, x0=4_000_000.0, y0=3_000_000.0):
    """Pixel centres of an n_side × n_side grid (10 m): every pixel's 8 neighbours are in the set."""
    c = np.arange(n_side) * spacing
    xx, yy = np.meshgrid(x0 + c + spacing / 2, y0 - c - spacing / 2)
    return xx.ravel(), yy.ravel()


def min_distance(x, y, a, b):
    d = (x[a][:, None] - x[b][None, :]) ** 2 + (y[a][:, None] - y[b][None, :]) ** 2
    return float(np.sqrt(d.min()))


def test_blocked_split_keeps_blocks_whole_and_neighbours_apart():
    x, y = grid_points()  # 600 m × 600 m
    tr, va, dropped = table.blocked_split(x, y, None, block_size=100.0, val_fraction=0.2, seed=3, buffer=25.0)
    # every sample is on exactly one side (or dropped)
    assert len(np.intersect1d(tr, va)) == 0 and len(np.intersect1d(tr, dropped)) == 0
    assert len(tr) + len(va) + len(dropped) == len(x)
    blocks = table.group_keys(x, y, None, 100.0).astype(str)
    assert not set(blocks[tr]) & set(blocks[va]), "a block sits on both sides"
    # whole blocks of 10 × 10 pixels were held out: 20 % of 36 blocks → 8 blocks (the first ≥ 20 %)
    assert len(va) % 100 == 0 and 0.2 <= len(va) / len(x) < 0.2 + 100 / len(x)
    # neighbouring pixels (8-neighbourhood, 14.1 m) never straddle; the closest pair is beyond the buffer
    assert min_distance(x, y, tr, va) > 25.0
    # without the buffer they would: the validation blocks touch training blocks
    tr0, va0, d0 = table.blocked_split(x, y, None, block_size=100.0, val_fraction=0.2, seed=3, buffer=0.0)
    assert len(d0) == 0 and np.array_equal(va0, va)
    assert min_distance(x, y, tr0, va0) == pytest.approx(10.0)
    # the seed decides which blocks; the same seed the same split
    assert np.array_equal(table.blocked_split(x, y, None, 100.0, 0.2, 3, 25.0)[1], va)
    assert not np.array_equal(table.blocked_split(x, y, None, 100.0, 0.2, 4, 25.0)[1], va)


def test_blocked_split_by_plot_never_puts_one_plot_on_both_sides():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 5000, size=(40, 2))
    plot = np.repeat([f"plot-{i}" for i in range(40)], 9).astype(object)
    x = np.repeat(centres[:, 0], 9) + np.tile(np.repeat([-10, 0, 10], 3), 40)
    y = np.repeat(centres[:, 1], 9) + np.tile([-10, 0, 10] * 3, 40)
    tr, va, dropped = table.blocked_split(x, y, plot, block_size=1e6, val_fraction=0.25, seed=1, buffer=30.0)
    assert set(plot[tr]).isdisjoint(plot[va])
    assert len(set(plot[va])) == 10  # 25 % of 40 plots of equal size
    # one block of 1000 km would hold everything: the plots, not the blocks, decide
    if len(dropped):
        assert min_distance(x, y, tr, va) > 30.0
    # samples without a plot id fall back to their spatial block
    plot2 = plot.copy()
    plot2[:18] = None
    keys = table.group_keys(x, y, plot2, 1000.0)
    assert all(k.startswith("block ") for k in keys[:18]) and all(k.startswith("plot ") for k in keys[18:])


def test_blocked_split_refuses_a_single_block():
    x, y = grid_points(5)
    with pytest.raises(ValueError, match="block-size"):
        table.blocked_split(x, y, None, block_size=10_000.0)


def test_near_matches_brute_force():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 300, (200, 2)), rng.uniform(0, 300, (50, 2))
    got = table.near(a[:, 0], a[:, 1], b[:, 0], b[:, 1], 17.0)
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(1)
    assert np.array_equal(got, d <= 17.0) and got.any() and not got.all()


def test_class_weights_are_inverse_frequency():
    labels = np.array([0] * 60 + [1] * 30 + [3] * 10)
    w = table.class_weights(labels, 4, "balanced")
    np.testing.assert_allclose(w, [100 / (3 * 60), 100 / (3 * 30), 0.0, 100 / (3 * 10)])
    # every present class then carries the same total weight
    np.testing.assert_allclose(np.bincount(labels, weights=w[labels], minlength=4)[[0, 1, 3]], 100 / 3)
    np.testing.assert_array_equal(table.class_weights(labels, 4, "none"), np.ones(4))
    with pytest.raises(ValueError):
        table.class_weights(labels, 4, "sqrt")


def test_the_table_reads_back_as_the_chunks_series_and_packs_like_data_pack(synthetic_run, tmp_path):
    path = tmp_path / "samples.parquet"
    n = make_table(synthetic_run, path, plots=60)
    s = table.read_table(path)
    assert len(s) == n > 300
    ref = data.load_samples(synthetic_run)
    # the same pixels, looked up in the chunks by (tile, row, col)
    key = {(ref.tiles[t], r, c): i for i, (t, r, c) in enumerate(zip(ref.tile, ref.row, ref.col))}
    idx = np.array([key[(s.tiles[t], r, c)] for t, r, c in zip(s.tile, s.row, s.col)])
    np.testing.assert_array_equal(s.n_obs, ref.n_obs[idx])
    np.testing.assert_array_equal(s.codes, ref.label[idx])  # no noise: the truth
    assert s.bands == ref.bands and [c["code"] for c in s.classes] == [c["code"] for c in TRUTH_CLASSES]
    assert s.plot_id is not None and len(set(s.plot_id)) == 60
    for seq in (dict(max_length=64, padding="left"), dict(max_length=12, padding="right", long_series="evenly"),
                dict(max_length=8, padding="left", long_series="latest")):
        contract = {"bands": list(reversed(s.bands)), "sequence": {"pad_value": 0.0, **seq},
                    "scaling": {"scale": 1e-4, "offset": 0.0, "mean": list(np.linspace(0.01, 0.3, 10)),
                                "std": list(np.linspace(0.02, 0.2, 10))}}
        got, want = data.pack(s, contract), data.pack(ref, contract, idx)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    # pixel centres on the tile's 10 m grid: x − 10·(col + ½) and y + 10·(row + ½) are the tile's corner
    for t in range(len(s.tiles)):
        sel = s.tile == t
        assert np.ptp(s.x[sel] - 10 * (s.col[sel] + 0.5)) == 0 and np.ptp(s.y[sel] + 10 * (s.row[sel] + 0.5)) == 0
    assert "LAEA" in s.metadata["treesits.crs_wkt"]


def test_read_table_errors_name_the_file_and_the_fix(synthetic_run, tmp_path):
    path = tmp_path / "samples.parquet"
    make_table(synthetic_run, path, plots=5)
    t = pq.read_table(path)
    meta = dict(t.schema.metadata)
    meta[b"treesits.format"] = b"something-else"
    bad = tmp_path / "other.parquet"
    pq.write_table(t.replace_schema_metadata(meta), bad)
    with pytest.raises(table.TableError, match=r"other\.parquet: not a treesits training table.*sample-extract"):
        table.read_table(bad)
    meta = dict(t.schema.metadata)
    classes = json.loads(meta[b"treesits.classes"])
    meta[b"treesits.classes"] = json.dumps([c for c in classes if c["code"] not in set(t.column("label").to_pylist())][:1]).encode()
    bad2 = tmp_path / "classes.parquet"
    pq.write_table(t.replace_schema_metadata(meta), bad2)
    with pytest.raises(table.TableError, match=r"classes\.parquet: labels \[.*\] are not in the table's treesits.classes"):
        table.read_table(bad2)
    with pytest.raises(table.TableError, match="not a readable Parquet file"):
        (tmp_path / "junk.parquet").write_text("junk")
        table.read_table(tmp_path / "junk.parquet")
    with pytest.raises(table.TableError, match=r"missing\.parquet: no such file; write the training table with sample-extract"):
        table.read_table(tmp_path / "missing.parquet")
    # without a class table, classes come from the labels and their names
    meta = dict(t.schema.metadata)
    del meta[b"treesits.classes"]
    plain = tmp_path / "plain.parquet"
    pq.write_table(t.replace_schema_metadata(meta), plain)
    s = table.read_table(plain)
    codes = sorted(set(t.column("label").to_pylist()))
    assert [c["code"] for c in s.classes] == codes
    names = {c["code"]: c["name"] for c in TRUTH_CLASSES}
    assert all(c["name"] == names[c["code"]] for c in s.classes)
    assert pa.types.is_list(t.schema.field("date").type)
