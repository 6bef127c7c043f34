"""Shared pieces of the training tests: the models package on sys.path, a small synthetic cube, tables.

The tables are written by `treesits_models.table.write_table` from cube-extract chunks and the synthetic
truth, in exactly sample-extract's schema (docs/formats.md, "Training table"), so these tests do not
depend on sample-extract. Binaries (treesits-synth, cube-extract, predict) come from $TREESITS_BIN,
target/release or PATH; the tests that need them skip, saying so, when they are missing.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))

from treesits_models import data  # noqa: E402
from treesits_models.contract import TRUTH_CLASSES  # noqa: E402
from treesits_models.table import write_table  # noqa: E402


def have_binaries(*names):
    try:
        for n in names:
            data.find_binary(n)
    except FileNotFoundError as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """Two 100 × 100 px tiles, 24 dates, seed 1: cube, truth and chunks."""
    missing = have_binaries("treesits-synth", "cube-extract")
    if missing:
        pytest.skip(missing)
    return data.make_synthetic(tmp_path_factory.mktemp("synth") / "run", seed=1, tiles=2, size=100, dates=24)


def truth_of(run_dir):
    return {t.name.replace("_truth.tif", ""): data.read_truth(t)
            for t in sorted((run_dir / "synth" / "truth").glob("*_truth.tif"))}


def make_table(run_dir, path, plots=120, per_plot=9, seed=0, noise=0.0, with_plots=True):
    """A table of `plots` clusters of up to `per_plot` pixels (a 3 × 3 window around a random pixel with a
    truth class), labels from the truth with a share `noise` of them replaced by another class.
    Returns the number of rows written."""
    rng = np.random.default_rng(seed)
    truth = truth_of(run_dir)
    noisy = {t: a.copy() for t, a in truth.items()}
    rows, plot_ids = {}, {}
    tiles = sorted(truth)
    for p in range(plots):
        tile = tiles[rng.integers(len(tiles))]
        t = truth[tile]
        r0, c0 = rng.integers(1, t.shape[0] - 1), rng.integers(1, t.shape[1] - 1)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if len([k for k in plot_ids if plot_ids[k] == f"p{p}"]) >= per_plot:
                    continue
                r, c = int(r0 + dr), int(c0 + dc)
                if t[r, c] >= len(TRUTH_CLASSES) or (r, c) in rows.get(tile, set()):
                    continue
                rows.setdefault(tile, set()).add((r, c))
                plot_ids[(tile, r, c)] = f"p{p}"
                if rng.random() < noise:
                    noisy[tile][r, c] = (t[r, c] + rng.integers(1, len(TRUTH_CLASSES))) % len(TRUTH_CLASSES)
    chunks = sorted((run_dir / "chunks").glob("*/*.arrows"))
    return write_table(path, chunks, noisy, rows, classes=TRUTH_CLASSES,
                       plot_ids=plot_ids if with_plots else None)
