"""Labelled field plots drawn from the synthetic truth, as a GeoPackage for `sample-extract` (no torch).

    python -m treesits_models.points --truth synth/truth --masks selection --points 3000 --noise 0.05 \\
        --seed 1 --out points.gpkg

Plots: `--points / --per-plot` random plot centres (pixels with a truth class, inside the pixel masks
when `--masks` is given, e.g. aoi-select's forest masks), each with `--per-plot` pixels drawn within
`--radius` pixels of its centre (a cluster, as a field crew samples a stand). Each point is a pixel
centre in the cube's CRS with the fields `class` (the truth's class code; a share `--noise` of them
replaced by another class at random: label noise) and `plot` (the plot's id). `classes.json` (the
class table) is written beside the GeoPackage. Needs GDAL's command-line tools (gdalinfo, ogr2ogr).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .contract import TRUTH_CLASSES
from .data import read_truth


def geotransform(tif: Path):
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(tif)], check=True, capture_output=True,
                                     text=True).stdout)
    return info["geoTransform"], info["coordinateSystem"]["wkt"]


def draw(truth_dir: Path, masks: Path | None, points: int, per_plot: int, radius: int, noise: float,
         seed: int, classes=TRUTH_CLASSES):
    """Rows (x, y, class, plot, truth class) and the CRS's WKT."""
    rng = np.random.default_rng(seed)
    ncls = len(classes)
    tiles = []
    for tif in sorted(Path(truth_dir).glob("*_truth.tif")):
        tile = tif.name[: -len("_truth.tif")]
        t = read_truth(tif)
        ok = t < ncls
        if masks is not None:
            m = Path(masks) / f"{tile}.mask.tif"
            ok &= read_truth(m) > 0 if m.is_file() else False
        if ok.any():
            gt, wkt = geotransform(tif)
            tiles.append((tile, t, ok, gt))
    if not tiles:
        raise SystemExit(f"points: error: no labelled pixel in {truth_dir}"
                         + (f" inside the masks of {masks}" if masks else ""))
    weights = np.array([ok.sum() for _, _, ok, _ in tiles], dtype=np.float64)
    rows, seen = [], set()
    plots = (points + per_plot - 1) // per_plot
    for p in range(plots):
        k = rng.choice(len(tiles), p=weights / weights.sum())
        tile, t, ok, gt = tiles[k]
        cand = np.argwhere(ok)
        r0, c0 = cand[rng.integers(len(cand))]
        near = [(r, c) for r in range(r0 - radius, r0 + radius + 1) for c in range(c0 - radius, c0 + radius + 1)
                if 0 <= r < t.shape[0] and 0 <= c < t.shape[1] and ok[r, c] and (tile, r, c) not in seen]
        for i in rng.permutation(len(near))[: min(per_plot, points - len(rows))]:
            r, c = near[i]
            seen.add((tile, r, c))
            code = int(t[r, c])
            label = code if rng.random() >= noise else int((code + rng.integers(1, ncls)) % ncls)
            x = gt[0] + (c + 0.5) * gt[1]
            y = gt[3] + (r + 0.5) * gt[5]
            rows.append((x, y, label, f"plot-{p:04d}", code))
        if len(rows) >= points:
            break
    return rows, wkt


def write_gpkg(rows, wkt: str, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".points-") as tmp:
        csv = Path(tmp) / "points.csv"
        with open(csv, "w") as f:
            f.write("x,y,class,plot\n")
            for x, y, label, plot, _ in rows:
                f.write(f"{x:.3f},{y:.3f},{label},{plot}\n")
        (Path(tmp) / "points.csvt").write_text("Real,Real,Integer,String\n")
        (Path(tmp) / "crs.wkt").write_text(wkt)
        staged = Path(tmp) / out.name
        subprocess.run(["ogr2ogr", "-q", "-f", "GPKG", str(staged), str(csv), "-nln", "points",
                        "-a_srs", str(Path(tmp) / "crs.wkt"), "-oo", "X_POSSIBLE_NAMES=x",
                        "-oo", "Y_POSSIBLE_NAMES=y"], check=True)
        os.replace(staged, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m treesits_models.points", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--truth", type=Path, required=True, help="directory of <tile>_truth.tif (treesits-synth's truth/)")
    p.add_argument("--masks", type=Path, help="directory of <tile>.mask.tif (aoi-select's): draw inside them only")
    p.add_argument("--points", type=int, default=3000, help="points (default 3000)")
    p.add_argument("--per-plot", type=int, default=10, help="points per plot (default 10)")
    p.add_argument("--radius", type=int, default=3, help="plot radius in pixels (default 3: a 7 × 7 window)")
    p.add_argument("--noise", type=float, default=0.05, help="share of labels replaced by another class (default 0.05)")
    p.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    p.add_argument("--out", type=Path, required=True, help="the GeoPackage to write (layer 'points')")
    a = p.parse_args(argv)
    if a.points < 1 or a.per_plot < 1 or a.radius < 0 or not 0 <= a.noise < 1:
        p.error("--points and --per-plot must be at least 1, --radius at least 0, --noise in [0, 1)")
    rows, wkt = draw(a.truth, a.masks, a.points, a.per_plot, a.radius, a.noise, a.seed)
    write_gpkg(rows, wkt, a.out)
    (a.out.parent / "classes.json").write_text(json.dumps(TRUTH_CLASSES, indent=2) + "\n")
    wrong = sum(1 for r in rows if r[2] != r[4])
    print(f"{a.out}: {len(rows)} points in {len({r[3] for r in rows})} plots, {wrong} labels "
          f"({100 * wrong / len(rows):.1f} %) changed by label noise", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
