"""Checks of the Nextflow pipeline that run without Nextflow (it cannot be installed here).

- every .nf and .config file parses (Groovy);
- nextflow_schema.json is a valid JSON Schema (draft 2020-12) and agrees with the params of nextflow.config;
- contract tests: each module's `script:` block is rendered as Nextflow would (params, task.ext.args from
  conf/modules.config, inputs) and run against the real binaries, task after task, in task directories
  staged like Nextflow's; the chained results make the map, which is checked against the synthetic truth,
  and ASSESS's report must find the same accuracy. A flag renamed in a binary but not in a module makes
  its task fail here. An AOI reaching beyond the cube runs too; SAMPLE_EXTRACT's command line is checked
  against the agreed flags, and against `sample-extract --help` and run on labelled points of the synthetic
  truth when the binary is on PATH;
- module conventions (nf-core): container, when, ext.args, stub, versions; each module's meta.yml and
  nf-test file agree with its inputs and outputs.

Per-profile configuration (images, resources, GPU, pod options) is tests/workflow/test_profiles.py.

Run: python3 tests/workflow/test_workflow.py   (binaries on PATH: scripts/test puts target/release first)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

from groovy_cli import REPO, groovy  # noqa: E402  (this directory is on sys.path when run as a script)
HERE = Path(__file__).resolve().parent


def render(spec: dict) -> object:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        return json.loads(groovy(str(HERE / "render_module.groovy"), str(REPO), f.name))
    finally:
        os.unlink(f.name)


def stage(task_dir: Path, staged: dict) -> None:
    """Links inputs into the task directory the way Nextflow's stageAs does."""
    for rel, target in staged.items():
        p = task_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(Path(target).resolve())


def run_task(task_dir: Path, command: str) -> None:
    (task_dir / ".command.sh").write_text("#!/bin/bash -euo pipefail\n" + command)
    r = subprocess.run(["bash", "-euo", "pipefail", ".command.sh"], cwd=task_dir, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"task in {task_dir} failed ({r.returncode}):\n{command}\n{r.stderr[-3000:]}")


def read_byte_raster(path: Path) -> np.ndarray:
    """A one-band Byte GeoTIFF as a 2-D array (through gdal_translate; no GDAL Python bindings needed)."""
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "r.bin"
        subprocess.run(["gdal_translate", "-q", "-of", "ENVI", "-ot", "Byte", str(path), str(raw)], check=True)
        info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], check=True, capture_output=True, text=True).stdout)
        cols, rows = info["size"]
        return np.fromfile(raw, dtype=np.uint8).reshape(rows, cols)


def versions_of(task_dir: Path, process: str, tool: str) -> str:
    text = (task_dir / "versions.yml").read_text()
    lines = text.splitlines()
    assert lines[0] == f'"{process}":', text
    key, value = lines[1].strip().split(": ", 1)
    assert key == tool, text
    return value


class ParseTest(unittest.TestCase):
    def test_every_nf_and_config_file_parses(self):
        files = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob("*.nf"), *REPO.glob("workflows/*.nf"),
                                                          *REPO.glob("modules/local/*/main.nf"),
                                                          *REPO.glob("*.config"), *REPO.glob("conf/*.config")])
        self.assertGreaterEqual(len(files), 13, files)
        out = groovy(str(HERE / "parse.groovy"), *files)
        self.assertEqual(out.count("ok "), len(files), out)


class SchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import jsonschema

        cls.jsonschema = jsonschema
        cls.schema = json.loads((REPO / "nextflow_schema.json").read_text())
        cls.params = render({"params_only": True})

    def schema_properties(self) -> dict:
        props = {}
        for group in self.schema["$defs"].values():
            for k, v in group["properties"].items():
                self.assertNotIn(k, props, f"param {k} is in two schema groups")
                props[k] = v
        return props

    def test_schema_is_valid_draft_2020_12(self):
        self.assertEqual(self.schema["$schema"], "https://json-schema.org/draft/2020-12/schema")
        self.jsonschema.Draft202012Validator.check_schema(self.schema)
        refs = {a["$ref"] for a in self.schema["allOf"]}
        self.assertEqual(refs, {f"#/$defs/{k}" for k in self.schema["$defs"]})

    def test_schema_id_and_home_page_are_the_repository(self):
        import re

        cargo = re.search(r'(?m)^repository\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text()).group(1)
        home = re.search(r"(?m)^\s*homePage\s*=\s*'([^']+)'", (REPO / "nextflow.config").read_text()).group(1)
        self.assertEqual(home, cargo)
        self.assertEqual(self.schema["$id"], f"{home}/raw/main/nextflow_schema.json")
        # Resource ceilings are resourceLimits only (nf-core deprecates params.max_*).
        self.assertFalse([k for k in self.params if k.startswith("max_")])

    def test_schema_and_config_params_agree(self):
        props = self.schema_properties()
        self.assertEqual(sorted(props), sorted(self.params), "params in nextflow.config vs nextflow_schema.json")
        for k, v in self.params.items():
            if v is None:
                self.assertNotIn("default", props[k], f"{k}: no default in the config, but one in the schema")
            else:
                self.assertEqual(props[k].get("default"), v, f"default of {k}")

    def test_profiles_validate_and_bad_values_do_not(self):
        validator = self.jsonschema.Draft202012Validator(self.schema)
        test_params = render({"params_only": True, "configs": ["conf/test.config"]})
        clean = lambda p: {k: v for k, v in p.items() if v is not None}
        self.assertEqual(list(validator.iter_errors(clean(test_params))), [])
        # The defaults alone lack the required outdir and model.
        missing = {e.message for e in validator.iter_errors(clean(self.params))}
        self.assertIn("'outdir' is a required property", missing)
        self.assertIn("'model' is a required property", missing)
        for key, bad in [("device", "gpu"), ("start", "2021-1-1"), ("chunks_per_task", 0),
                         ("gpu_node_selector", "gpu"), ("sensors", "SEN2A,LND10"), ("forest_mask_values", "ten"),
                         ("samples_polygons", "corner"), ("samples_classes", "classes.csv")]:
            errors = list(validator.iter_errors(clean({**test_params, key: bad})))
            self.assertTrue(errors, f"{key}={bad!r} should be refused")

    def test_samples_need_a_label_and_samples_only_needs_no_model(self):
        validator = self.jsonschema.Draft202012Validator(self.schema)
        clean = lambda p: {k: v for k, v in p.items() if v is not None}
        mapping = clean(render({"params_only": True, "configs": ["conf/test.config"]}))
        errors = lambda p: sorted(e.message for e in validator.iter_errors(p))
        self.assertEqual(errors(mapping | {"samples": "plots.gpkg", "samples_label": "species"}), [])
        self.assertEqual(errors(mapping | {"samples": "plots.gpkg"}), ["'samples_label' is a dependency of 'samples'"])
        # The training table alone: no model (nor AOI, which the schema never requires).
        alone = {k: v for k, v in mapping.items() if k != "model"} | {"samples_only": True}
        self.assertEqual(errors(alone | {"samples": "plots.gpkg", "samples_label": "species"}), [])
        self.assertEqual(errors(alone), ["'samples' is a required property"])
        # Without --samples_only the model stays required.
        self.assertEqual(errors(alone | {"samples_only": False, "samples": "p.gpkg", "samples_label": "s"}),
                         ["'model' is a required property"])

    def test_main_refuses_what_the_schema_cannot_say(self):
        # validate_params may be off: main.nf checks the samples rules itself, each with one line
        # naming the fix, before any task starts.
        main = (REPO / "main.nf").read_text()
        for condition, names in [("params.samples_only && !params.samples", "--samples"),
                                 ("params.samples && !params.samples_label", "--samples_label"),
                                 ("params.samples && params.window", "--start/--end"),
                                 ("mapping && !params.model", "--samples_only")]:
            i = main.index(f"if ({condition}) {{")
            line = main[i:].splitlines()[1].strip()
            self.assertTrue(line.startswith('error "treesits: ') and names in line, (condition, line))
            self.assertLess(i, main.index("SYNTH ("), condition)
        # The map's steps run unless --samples_only; the training table only with --samples.
        self.assertRegex(main, r"if \(params.samples\) \{\n\s+TRAINING_DATA \(")
        self.assertRegex(main, r"if \(mapping\) \{\n\s+TREESITS \(")

    def test_the_kubernetes_params_files_validate(self):
        import yaml

        validator = self.jsonschema.Draft202012Validator(self.schema)
        files = sorted(REPO.glob("kubernetes/**/params.yaml"))
        self.assertGreaterEqual(len(files), 3, files)
        for f in files:
            params = yaml.safe_load(f.read_text())
            self.assertEqual([e.message for e in validator.iter_errors(params)], [], f)
            self.assertTrue(set(params) <= set(self.params), f"{f}: unknown params {set(params) - set(self.params)}")


def module_interface(main_nf: str) -> tuple:
    """(process name, input names, output emit names) of a module's main.nf."""
    import re

    name = re.search(r"(?m)^process\s+(\w+)\s*\{", main_nf).group(1)
    inputs = re.search(r"(?s)\n\s*input:\s*\n(.*?)\n\s*output:", main_nf).group(1)
    outputs = re.search(r"(?s)\n\s*output:\s*\n(.*?)\n\s*(when|script):", main_nf).group(1)
    names = [re.findall(r"(?:val|path)\s*\(?\s*(\w+)", line.split("//")[0]) for line in inputs.splitlines() if line.strip()]
    return name, names, re.findall(r"emit:\s*(\w+)", outputs)


class ModuleConventionsTest(unittest.TestCase):
    """nf-core's module conventions, and each module's meta.yml and nf-test file in step with it."""

    def modules(self):
        found = sorted(REPO.glob("modules/local/*/main.nf"))
        self.assertEqual(len(found), 8, found)
        return found

    def test_every_module_follows_the_conventions(self):
        base = (REPO / "conf/base.config").read_text()
        for main_nf in self.modules():
            text = main_nf.read_text()
            name, inputs, emits = module_interface(text)
            self.assertIn('tag "${meta.id}"', text, name)
            [label] = [l for l in text.splitlines() if l.strip().startswith("label ")]
            self.assertIn(f"withLabel: {label.split()[1].strip(chr(39))}", base, name)
            self.assertRegex(text, r'\n    container "\$\{params.container_registry\}/treesits-[a-z-]+(\$\{[^}]+\})?[a-z-]*:\$\{params.image_tag\}"\n', name)
            self.assertIn("    when:\n    task.ext.when == null || task.ext.when\n", text, name)
            self.assertIn("def args = task.ext.args ?: ''", text, name)
            self.assertIn("\n    stub:\n", text, name)
            self.assertEqual(emits[-1], "versions", name)
            self.assertIn("path 'versions.yml'", text, name)
            self.assertNotIn("params.max_", text, name)

    def test_meta_yml_describes_each_module(self):
        import yaml

        for main_nf in self.modules():
            name, inputs, emits = module_interface(main_nf.read_text())
            meta = yaml.safe_load((main_nf.parent / "meta.yml").read_text())
            self.assertEqual(meta["name"], main_nf.parent.name)
            self.assertTrue(meta["description"] and meta["tools"], name)
            described = [[next(iter(e)) for e in item] if isinstance(item, list) else [next(iter(item))]
                         for item in meta["input"]]
            self.assertEqual(described, inputs, f"{name}: meta.yml inputs")
            self.assertEqual(list(meta["output"]), emits, f"{name}: meta.yml outputs")

    def test_every_module_has_an_nf_test_naming_its_outputs(self):
        self.assertIn("cannot be installed", (REPO / "modules/local/README.md").read_text())
        for main_nf in self.modules():
            name, inputs, emits = module_interface(main_nf.read_text())
            test = (main_nf.parent / "tests/main.nf.test").read_text()
            self.assertIn(f'process "{name}"', test)
            self.assertIn('script "../main.nf"', test)
            self.assertIn('options "-stub"', test, name)
            for emit in emits:
                self.assertIn(f"process.out.{emit}", test, f"{name}: the nf-test does not check output {emit}")
            for i in range(len(inputs)):
                self.assertIn(f"input[{i}]", test, name)
            self.assertNotIn(f"input[{len(inputs)}]", test, name)


def read_csv(path: Path) -> list:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


class ModuleContractTest(unittest.TestCase):
    """The pipeline's tasks, chained as workflows/treesits.nf chains them, on a synthetic cube."""

    @classmethod
    def setUpClass(cls):
        cls.work = Path(tempfile.mkdtemp(prefix="treesits-nf-"))
        cls.configs = ["conf/test.config"]
        cls.params = render({"params_only": True, "configs": cls.configs})
        cls.runs = 0

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("KEEP_WORK"):
            shutil.rmtree(cls.work, ignore_errors=True)

    def render_module(self, name: str, process: str, jobs: list, cpus: int = 2, params: dict = None,
                      memory_mb: int = None) -> list:
        task = {"cpus": cpus} | ({"memory_mb": memory_mb} if memory_mb else {})
        return render({"module": f"modules/local/{name}", "process": process, "configs": self.configs,
                       "task": task, "jobs": jobs, "params": params or {}})

    def task_dir(self, name: str) -> Path:
        d = self.work / name
        d.mkdir(parents=True)
        return d

    def tool_version(self, tool: str) -> str:
        out = subprocess.run([tool, "--version"], check=True, capture_output=True, text=True).stdout.strip()
        return out.split(" ", 1)[1]

    def synth(self) -> Path:
        """SYNTH, once per test: the synthetic world's directory."""
        p = self.params
        synth = self.task_dir(f"synth-{self.id().rsplit('.', 1)[1]}")
        [cmd] = self.render_module("synth", "SYNTH", [{"meta": {"id": "synthetic"}}])
        self.assertIn(f"--tiles {p['synth_tiles']} --size {p['synth_size']}", cmd)
        run_task(synth, cmd)
        manifest = json.loads((synth / "synth/manifest.json").read_text())
        self.assertEqual(len(manifest["tiles"]), p["synth_tiles"])
        self.assertEqual(versions_of(synth, "SYNTH", "treesits-synth"), self.tool_version("treesits-synth"))
        return synth / "synth"

    def run_pipeline(self, world: Path, cube: Path, outdir: Path, incremental: bool, aoi: Path = None) -> dict:
        """One run of workflows/treesits.nf, task by task, publishing into outdir as modules.config
        does. Returns the plan, the tiles' metas, the tiles extracted, and the mosaic task dir (None
        when the workflow's gate stops it)."""
        p = self.params | {"incremental": incremental, "outdir": str(outdir)}
        aoi = aoi or world / "aoi_laea.gpkg"
        ModuleContractTest.runs += 1
        run = self.work / f"run{self.runs}"

        # AOI_SELECT: the AOI and the land-cover masks staged as aoi/* and masks/*
        aoi_task = self.task_dir(f"run{self.runs}/aoi_select")
        landcover = sorted((world / "landcover").glob("*.tif"))
        stage(aoi_task, {f"aoi/{aoi.name}": aoi, **{f"masks/{f.name}": f for f in landcover}})
        [cmd] = self.render_module("aoi_select", "AOI_SELECT", [{
            "meta": {"id": "aoi"}, "aoi": f"aoi/{aoi.name}", "masks": [f"masks/{f.name}" for f in landcover],
            "cube": str(cube), "mask_values": p["forest_mask_values"]}], params=p)
        self.assertIn("--mask-values 10", cmd)
        run_task(aoi_task, cmd)
        rows = read_csv(aoi_task / "selection/tiles.csv")
        self.assertGreaterEqual(len(rows), 1)
        self.assertEqual(versions_of(aoi_task, "AOI_SELECT", "aoi-select"), self.tool_version("aoi-select"))

        # CUBE_INVENTORY: tiles.csv and masks staged as selection/*; previous and reuse as the
        # workflow sets them.
        inv_task = self.task_dir(f"run{self.runs}/cube_inventory")
        model = Path(p["model"])
        stage(inv_task, {"selection/tiles.csv": aoi_task / "selection/tiles.csv",
                         **{f"selection/{r['mask']}": aoi_task / "selection" / r["mask"] for r in rows},
                         f"model/{model.name}": model})
        previous = f"{outdir}/inventory.json" if incremental else ""
        reuse = f"{outdir}/predictions" if incremental else ""
        [cmd] = self.render_module("cube_inventory", "CUBE_INVENTORY", [{
            "meta": {"id": "aoi"}, "tiles_csv": "selection/tiles.csv",
            "masks": [f"selection/{r['mask']}" for r in rows], "cube": str(cube),
            "model": f"model/{model.name}", "previous": previous, "reuse": reuse}], params=p)
        self.assertIn(f"--param 'screen={p['screen']}'", cmd)
        run_task(inv_task, cmd)
        self.assertEqual(versions_of(inv_task, "CUBE_INVENTORY", "cube-inventory"), self.tool_version("cube-inventory"))
        plan = {r["tile_id"]: r for r in read_csv(inv_task / "plan.csv")}

        # The workflow's join and branch: meta from tiles.csv and the plan.
        metas = {}
        for r in rows:
            t = plan[r["tile_id"]]
            metas[r["tile_id"]] = {"id": r["tile_id"], "tile": r["tile_id"], "pixels": int(r["pixels"]),
                                   "fingerprint": t["fingerprint"], "product_key": t["product_key"],
                                   "start": t["first_date"], "end": t["last_date"]}
        todo = sorted(t for t in metas if not (incremental and plan[t]["status"] == "unchanged"))
        reused = sorted(t for t in metas if incremental and plan[t]["status"] == "unchanged")

        # CUBE_EXTRACT: one task per tile to process, the tile's mask staged as mask/*
        mask_of = {r["tile_id"]: r["mask"] for r in rows}
        jobs, dirs = [], []
        for tile in todo:
            d = self.task_dir(f"run{self.runs}/cube_extract/{tile}")
            stage(d, {f"mask/{mask_of[tile]}": aoi_task / "selection" / mask_of[tile]})
            jobs.append({"meta": metas[tile], "mask": f"mask/{mask_of[tile]}", "cube": str(cube)})
            dirs.append(d)
        # With the task's memory (2 GB, as a profile's label would give it): 3/4 of it for the chunks.
        commands = self.render_module("cube_extract", "CUBE_EXTRACT", jobs, params=p, memory_mb=2048) if jobs else []
        for d, cmd, job in zip(dirs, commands, jobs):
            self.assertIn("--memory 1536M", cmd)
            self.assertIn(f"--screen {p['screen']}", cmd)
            self.assertIn(f"--start {job['meta']['start']} --end {job['meta']['end']}", cmd)
            run_task(d, cmd)
        chunks = {d.name: sorted((d / "chunks").glob("*.arrows")) for d in dirs}
        for tile, files in chunks.items():
            self.assertTrue(files, tile)
            self.assertTrue(all(f.name.startswith(tile + "_chunk") for f in files), files)

        # PREDICT: groups of chunks_per_task chunks, as the workflow collates them; published per tile
        # under its product key.
        jobs, dirs = [], []
        for tile, files in sorted(chunks.items()):
            n = p["chunks_per_task"]
            for g in range(0, len(files), n):
                d = self.task_dir(f"run{self.runs}/predict/{tile}_g{g // n}")
                stage(d, {f"in/{f.name}": f for f in files[g:g + n]} | {f"model/{model.name}": model})
                jobs.append({"meta": metas[tile] | {"id": f"{tile}_g{g // n}", "group": g // n},
                             "chunks": [f"in/{f.name}" for f in files[g:g + n]], "model": f"model/{model.name}"})
                dirs.append(d)
        for d, cmd, job in zip(dirs, self.render_module("predict", "PREDICT", jobs, params=p, memory_mb=4096) if jobs else [], jobs):
            self.assertIn("--memory 3072M", cmd)
            run_task(d, cmd)
            published = outdir / "predictions" / job["meta"]["tile"] / job["meta"]["product_key"]
            published.mkdir(parents=True, exist_ok=True)
            for f in (d / "pred").glob("*.pred.arrows"):
                shutil.copy(f, published / f.name)
        predictions = sorted(f for d in dirs for f in (d / "pred").glob("*.pred.arrows"))
        self.assertEqual([f.name for f in predictions],
                         sorted(f.name.replace(".arrows", ".pred.arrows") for fs in chunks.values() for f in fs))
        for tile in reused:
            predictions += sorted((outdir / "predictions" / tile / metas[tile]["product_key"]).glob("*.pred.arrows"))
        predictions.sort(key=lambda f: f.name)

        # MOSAIC, when any tile changed (always without --incremental): every prediction staged as
        # in/*, clipped to the AOI (test profile: clip = true); map and inventory published.
        result = {"plan": plan, "metas": metas, "extracted": todo, "reused": reused, "mosaic": None}
        if incremental and all(t["status"] == "unchanged" for t in plan.values()):
            return result
        m = self.task_dir(f"run{self.runs}/mosaic")
        stage(m, {f"in/{f.name}": f for f in predictions} | {f"clip/{aoi.name}": aoi,
                                                               "inventory/inventory.json": inv_task / "inventory.json"})
        [cmd] = self.render_module("mosaic", "MOSAIC", [{
            "meta": {"id": "mosaic"}, "predictions": [f"in/{f.name}" for f in predictions],
            "clip": f"clip/{aoi.name}" if p["clip"] else [], "inventory": "inventory/inventory.json"}], params=p)
        run_task(m, cmd)
        for name in ["mosaic_class.vrt", "mosaic_class.tif", "quicklook.png"]:
            self.assertTrue((m / "map" / name).is_file(), name)
        shutil.copytree(m / "map", outdir / "map", dirs_exist_ok=True)
        shutil.copy(m / "inventory.json", outdir / "inventory.json")
        result["mosaic"] = m
        result["rows"] = rows
        result["aoi_task"] = aoi_task
        return result

    def test_chained_modules_make_the_map(self):
        p = self.params
        world = self.synth()
        out = self.work / "results"
        r = self.run_pipeline(world, (world / "cube").resolve(), out, incremental=False)
        m, rows, aoi_task = r["mosaic"], r["rows"], r["aoi_task"]
        self.assertEqual(sorted(r["plan"]), sorted(row["tile_id"] for row in rows))
        self.assertTrue(all(t["status"] == "new" for t in r["plan"].values()))
        # The published inventory is the map's record: every tile's acquisitions, model and versions.
        inventory = json.loads((out / "inventory.json").read_text())
        self.assertEqual([t["tile_id"] for t in inventory["tiles"]], sorted(row["tile_id"] for row in rows))
        self.assertEqual(inventory["software"]["treesits"], self.tool_version("cube-inventory"))
        self.assertEqual(len(inventory["recipe"]["model_sha256"]), 64)
        self.assertEqual(len(inventory["tiles"][0]["acquisitions"]), p["synth_dates"])

        # The map against the synthetic truth, tile by tile, on the pixels aoi-select chose.
        right = total = 0
        for row in rows:
            tile = row["tile_id"]
            cls = read_byte_raster(m / "map" / f"{tile}_class.tif")
            truth = read_byte_raster(world / "truth" / f"{tile}_truth.tif")
            mask = read_byte_raster(aoi_task / "selection" / row["mask"]) == 1
            predicted = mask & (cls != 255)
            self.assertEqual(int(mask.sum()), int(row["pixels"]))
            # Outside the selection every pixel is nodata.
            self.assertTrue(np.all(cls[~mask] == 255), tile)
            right += int((cls[predicted] == truth[predicted]).sum())
            total += int(predicted.sum())
        self.assertGreater(total, 0)
        accuracy = right / total
        print(f"\nworkflow contract test: overall accuracy {accuracy:.3f} on {total} pixels", file=sys.stderr)
        self.assertGreaterEqual(accuracy, 0.90)

        # ASSESS: the mosaic's map staged as map/*, the synthetic truth rasters as reference/* (what
        # main.nf gives it under -profile test); its report must find the accuracy counted above.
        a = self.task_dir("assess")
        truth = sorted((world / "truth").glob("*_truth.tif"))
        self.assertEqual(len(truth), p["synth_tiles"])
        stage(a, {f"map/{f.name}": f for f in (m / "map").iterdir()} | {f"reference/{f.name}": f for f in truth})
        [cmd] = self.render_module("assess", "ASSESS", [{
            "meta": {"id": "mosaic"}, "map": [f"map/{f.name}" for f in (m / "map").iterdir()],
            "reference": [f"reference/{f.name}" for f in truth]}], params=p)
        self.assertIn("--field 'class'", cmd)
        run_task(a, cmd)
        report = json.loads((a / "accuracy/accuracy.json").read_text())
        self.assertTrue((a / "accuracy/accuracy.md").read_text().strip())
        self.assertEqual(versions_of(a, "ASSESS", "assess"), self.tool_version("assess"))
        self.assertEqual(report["samples"], total)
        self.assertAlmostEqual(report["overall_accuracy"], accuracy, places=9)
        self.assertGreaterEqual(report["overall_accuracy"], 0.90)
        self.assertGreater(report["kappa"], 0.8)
        # A Shapefile's side files are staged but only the .shp is passed.
        [cmd] = self.render_module("assess", "ASSESS", [{
            "meta": {"id": "mosaic"}, "map": ["map/mosaic_class.tif"],
            "reference": ["reference/plots.shp", "reference/plots.dbf", "reference/plots.shx", "reference/plots.prj"]}],
            params=p | {"reference_layer": "plots", "reference_field": "species"})
        self.assertIn("--reference 'reference/plots.shp' \\\n", cmd)
        self.assertNotIn(".dbf", cmd)
        self.assertIn("--layer 'plots' --field 'species'", cmd)

        # The same world through scripts/demo (the README's demo, a shell pipeline of the binaries) gives
        # the same map, pixel for pixel.
        demo = self.work / "demo"
        subprocess.run([sys.executable, str(REPO / "scripts/demo"), "--out", str(demo),
                        "--tiles", str(p["synth_tiles"]), "--size", str(p["synth_size"]),
                        "--dates", str(p["synth_dates"]), "--seed", str(p["synth_seed"]),
                        "--model", str(p["model"]), "--sample-per-class", "0"],
                       check=True, capture_output=True, text=True)
        for row in rows:
            tile = row["tile_id"]
            np.testing.assert_array_equal(read_byte_raster(m / "map" / f"{tile}_class.tif"),
                                          read_byte_raster(demo / "map" / f"{tile}_class.tif"), err_msg=tile)
        np.testing.assert_array_equal(read_byte_raster(m / "map" / "mosaic_class.tif"),
                                      read_byte_raster(demo / "map" / "mosaic_class.tif"))

    def sample_points(self, world: Path, per_tile: int = 12) -> tuple:
        """Labelled points at pixel centres of the synthetic truth: (GeoPackage, {(tile, row, col): class})."""
        cube = (world / "cube").resolve()
        rng = np.random.default_rng(11)
        rows, labels = ["id,species,WKT"], {}
        for truth in sorted((world / "truth").glob("*_truth.tif")):
            tile = truth.name[:11]
            classes = read_byte_raster(truth)
            info = json.loads(subprocess.run(["gdalinfo", "-json", str(truth)], check=True, capture_output=True, text=True).stdout)
            x0, dx, _, y0, _, dy = info["geoTransform"]
            candidates = np.argwhere(classes != 255)
            for r, c in candidates[rng.choice(len(candidates), per_tile, replace=False)]:
                labels[(tile, int(r), int(c))] = int(classes[r, c])
                rows.append(f'{len(rows)},{classes[r, c]},"POINT({x0 + (c + 0.5) * dx} {y0 + (r + 0.5) * dy})"')
        csv = self.work / "samples.csv"
        csv.write_text("\n".join(rows) + "\n")
        gpkg = self.work / "samples.gpkg"
        subprocess.run(["ogr2ogr", "-q", "-f", "GPKG", "-a_srs", info["coordinateSystem"]["wkt"], "-nln", "plots",
                        "-oo", "GEOM_POSSIBLE_NAMES=WKT", "-oo", "KEEP_GEOM_COLUMNS=NO", "-oo", "AUTODETECT_TYPE=YES",
                        str(gpkg), str(csv)], check=True)
        self.assertTrue(cube.is_dir())
        return gpkg, labels

    def test_cube_extract_gets_three_quarters_of_the_task_memory_when_the_task_has_some(self):
        """task.memory (a profile's label, or a retry's doubled request) becomes --memory, 3/4 of it in MiB;
        without one (an executor that sets none) the tool's own default applies: no flag."""
        job = {"meta": {"id": "X0001_Y0001", "start": "2021-01-01", "end": "2021-12-31"},
               "mask": "mask/X0001_Y0001.mask.tif", "cube": "/data/cube"}
        [cmd] = self.render_module("cube_extract", "CUBE_EXTRACT", [job], memory_mb=12 * 1024)
        self.assertIn("--memory 9216M", cmd)
        [cmd] = self.render_module("cube_extract", "CUBE_EXTRACT", [job])
        self.assertNotIn("--memory", cmd)
        predict = {"meta": {"id": "X0001_Y0001_g0"}, "chunks": ["in/X0001_Y0001_chunk0000.arrows"], "model": "model/m.onnx"}
        [cmd] = self.render_module("predict", "PREDICT", [predict], memory_mb=6000)
        self.assertIn("--memory 4500M", cmd)
        [cmd] = self.render_module("predict", "PREDICT", [predict])
        self.assertNotIn("--memory", cmd)

    def test_sample_extract_gets_the_agreed_command_line_and_the_maps_selection(self):
        """SAMPLE_EXTRACT (--samples): once per run on the whole cube, with the map's window, sensors and
        QAI screen, the table and report under training/. Runs the task when sample-extract is on PATH."""
        p = self.params | {"samples": "plots.gpkg", "samples_label": "species", "samples_layer": "plots",
                           "start": "2021-03-01", "end": "2021-10-31", "sensors": "SEN2A,SEN2B"}
        job = {"meta": {"id": "samples"}, "samples": ["samples/plots.gpkg"], "classes": [], "cube": "/data/cube"}
        [cmd] = self.render_module("sample_extract", "SAMPLE_EXTRACT", [job], cpus=8, params=p)
        tool = cmd.split("cat <<-END_VERSIONS")[0]
        flags = dict(re.findall(r"(--[a-z-]+) ('[^']*'|\S+)", tool))
        self.assertEqual(flags, {"--cube": "'/data/cube'", "--samples": "'samples/plots.gpkg'", "--threads": "8",
                                 "--report": "training/samples_report.csv", "--out": "training/samples.parquet",
                                 "--layer": "'plots'", "--label": "'species'", "--polygons": "all",
                                 "--start": "2021-03-01", "--end": "2021-10-31", "--sensors": "SEN2A,SEN2B",
                                 "--screen": p["screen"]})
        self.assertTrue(cmd.startswith("mkdir -p training\nsample-extract \\\n"), cmd)
        # The optional fields; a Shapefile's side files are staged but only the .shp is passed; a class table.
        [cmd] = self.render_module("sample_extract", "SAMPLE_EXTRACT", [job | {
            "samples": ["samples/plots.shp", "samples/plots.dbf", "samples/plots.shx", "samples/plots.prj"],
            "classes": "classes/species.json"}], params=p | {
            "samples_plot_id": "plot", "samples_weight": "w", "samples_year": "year", "samples_polygons": "centre",
            "sensors": "SEN2A,LND08", "bands": "BLUE,GREEN,RED,NIR,SWIR1,SWIR2"})
        self.assertIn("--samples 'samples/plots.shp' \\\n", cmd)
        self.assertNotIn(".dbf", cmd)
        self.assertIn("--classes 'classes/species.json'", cmd)
        # Two vectors are refused before anything runs, naming them.
        with self.assertRaises(AssertionError) as refused:
            self.render_module("sample_extract", "SAMPLE_EXTRACT", [job | {"samples": ["samples/a.gpkg", "samples/b.gpkg"]}], params=p)
        self.assertIn("--samples must name one vector", str(refused.exception))
        self.assertIn("samples/a.gpkg, samples/b.gpkg", str(refused.exception))
        self.assertIn("--plot-id 'plot' --weight 'w' --year 'year' --polygons centre", cmd)
        # --bands as CUBE_EXTRACT gets it: Landsat and Sentinel-2 in one series, in the map and the table alike.
        self.assertIn("--sensors SEN2A,LND08 --bands BLUE,GREEN,RED,NIR,SWIR1,SWIR2 --screen", cmd)

        if not shutil.which("sample-extract"):
            self.skipTest("sample-extract is not on PATH (its branch is not merged here): command line checked, not run")
        # Every flag the module passes is one the binary knows.
        usage = subprocess.run(["sample-extract", "--help"], check=True, capture_output=True, text=True).stdout
        for flag in set(re.findall(r"--[a-z-]+", cmd.split("cat <<-END_VERSIONS")[0])):
            self.assertIn(flag, usage, flag)
        world = self.synth()
        gpkg, labels = self.sample_points(world)
        t = self.task_dir("sample_extract")
        stage(t, {"samples/plots.gpkg": gpkg})
        [cmd] = self.render_module("sample_extract", "SAMPLE_EXTRACT", [job | {"cube": str((world / "cube").resolve())}],
                                   params=self.params | {"samples": str(gpkg), "samples_label": "species"})
        run_task(t, cmd)
        import pyarrow.parquet as pq

        # One row per point (each on its own pixel of the cube, with observations), labelled with the
        # truth class of its pixel; the report lists the samples not written: none.
        table = pq.read_table(t / "training/samples.parquet").to_pydict()
        self.assertEqual(len(table["label"]), len(labels))
        written = {(tile, r, c): label for tile, r, c, label in zip(table["tile_id"], table["row"], table["col"], table["label"])}
        self.assertEqual(written, labels)
        self.assertTrue(all(n > 0 for n in table["n_obs"]))
        report = (t / "training/samples_report.csv").read_text().splitlines()
        self.assertEqual(report[1:], [], report)
        self.assertEqual(versions_of(t, "SAMPLE_EXTRACT", "sample-extract"), self.tool_version("sample-extract"))

    def test_an_aoi_at_the_cube_edge_maps_the_tiles_the_cube_has(self):
        """An AOI that reaches beyond the cube: the tiles the cube lacks are left out (aoi-select
        --existing-only), not handed to cube-inventory, which would stop with "no such directory"."""
        world = self.synth()
        cube = (world / "cube").resolve()
        tiles = sorted(d.name for d in cube.iterdir() if d.is_dir())
        west = min(tiles, key=lambda t: (int(t[1:5]), int(t[7:11])))
        boa = sorted((cube / west).glob("*_BOA.tif"))[0]
        info = json.loads(subprocess.run(["gdalinfo", "-json", str(boa)], check=True, capture_output=True, text=True).stdout)
        x0, dx, _, y0, _, dy = info["geoTransform"]
        cols, rows = info["size"]
        # A band from beyond the cube's west edge into its second tile (so every land-cover mask overlaps
        # the AOI): the tile west of the cube is covered too.
        self.assertEqual(tiles, [west, f"X{int(west[1:5]) + 1:04d}{west[5:]}"])
        xmin, xmax, ymax, ymin = x0 - 20 * dx, x0 + (cols + 30) * dx, y0 + 10 * dy, y0 + 40 * dy
        csv = self.work / "edge.csv"
        csv.write_text(f'id,WKT\n1,"POLYGON(({xmin} {ymin},{xmax} {ymin},{xmax} {ymax},{xmin} {ymax},{xmin} {ymin}))"\n')
        aoi = self.work / "edge.gpkg"
        subprocess.run(["ogr2ogr", "-q", "-f", "GPKG", "-a_srs", info["coordinateSystem"]["wkt"], "-nln", "edge",
                        "-oo", "GEOM_POSSIBLE_NAMES=WKT", "-oo", "KEEP_GEOM_COLUMNS=NO", str(aoi), str(csv)], check=True)
        r = self.run_pipeline(world, cube, self.work / "edge-results", incremental=False, aoi=aoi)
        self.assertEqual([row["tile_id"] for row in r["rows"]], tiles)
        self.assertEqual(sorted(r["plan"]), tiles)
        self.assertEqual(r["extracted"], tiles)
        for tile in tiles:
            self.assertTrue((self.work / "edge-results/map" / f"{tile}_class.tif").is_file(), tile)

    def test_incremental_runs_redo_exactly_the_tile_that_changed(self):
        world = self.synth()
        cube = (self.work / "growing-cube").resolve()
        shutil.copytree(world / "cube", cube)
        tiles = sorted(d.name for d in cube.iterdir() if d.is_dir())
        self.assertGreaterEqual(len(tiles), 2)
        target = cube / tiles[1]
        newest = max(f.name[:8] for f in target.glob("*_BOA.tif"))
        aside = self.work / "aside"
        aside.mkdir()
        for f in target.glob(f"{newest}_*"):
            f.rename(aside / f.name)
        out = self.work / "continuous"

        # First incremental run: no inventory yet, so every tile is new.
        first = self.run_pipeline(world, cube, out, incremental=True)
        self.assertEqual(first["extracted"], tiles)
        self.assertIsNotNone(first["mosaic"])
        map_time = (out / "map" / "mosaic_class.tif").stat().st_mtime_ns

        # Nothing changed: no tile is extracted or predicted, no mosaic is made, the map stays.
        idle = self.run_pipeline(world, cube, out, incremental=True)
        self.assertEqual({t["status"] for t in idle["plan"].values()}, {"unchanged"})
        self.assertEqual(idle["extracted"], [])
        self.assertIsNone(idle["mosaic"])
        self.assertEqual((out / "map" / "mosaic_class.tif").stat().st_mtime_ns, map_time)

        # One acquisition lands in one tile: exactly that tile is redone; its meta (and so its
        # Nextflow task hashes) changes, the others' does not.
        for f in aside.iterdir():
            f.rename(target / f.name)
        grown = self.run_pipeline(world, cube, out, incremental=True)
        self.assertEqual(grown["extracted"], [tiles[1]])
        self.assertEqual(grown["reused"], [t for t in tiles if t != tiles[1]])
        self.assertTrue(grown["plan"][tiles[1]]["reason"].startswith(f"added {newest[:4]}-{newest[4:6]}-{newest[6:]}"))
        self.assertEqual(grown["metas"][tiles[1]]["end"], f"{newest[:4]}-{newest[4:6]}-{newest[6:]}")
        for t in tiles:
            same = first["metas"][t] == grown["metas"][t]
            self.assertEqual(same, t != tiles[1], t)
        published = json.loads((out / "inventory.json").read_text())
        self.assertEqual(published["tiles"][1]["acquisitions"][-1]["boa"]["name"][:8], newest)
        # The tile's map says which dates it is made from: those of the published inventory.
        for t, record in zip(tiles, published["tiles"]):
            info = json.loads(subprocess.run(["gdalinfo", "-json", str(out / "map" / f"{t}_class.tif")],
                                             check=True, capture_output=True, text=True).stdout)
            dates = f"{record['acquisitions'][0]['date']}/{record['acquisitions'][-1]['date']}"
            self.assertEqual(info["metadata"][""]["TREESITS_DATES"], dates, t)

        # The refreshed map equals a from-scratch run on the grown cube.
        scratch_out = self.work / "scratch"
        scratch = self.run_pipeline(world, cube, scratch_out, incremental=False)
        for name in ["mosaic_class.tif"] + [f"{t}_class.tif" for t in tiles] + [f"{t}_prob.tif" for t in tiles]:
            a, b = out / "map" / name, scratch_out / "map" / name
            if name.endswith("_prob.tif"):
                self.assertEqual(subprocess.run(["cmp", str(a), str(b)]).returncode, 0, name)
            else:
                np.testing.assert_array_equal(read_byte_raster(a), read_byte_raster(b), err_msg=name)
        # The grown tile really differs from the first map (the new date entered the model).
        first_pred = sorted((out / "predictions" / tiles[1] / first["metas"][tiles[1]]["product_key"]).glob("*"))
        grown_pred = sorted((out / "predictions" / tiles[1] / grown["metas"][tiles[1]]["product_key"]).glob("*"))
        self.assertEqual([f.name for f in first_pred], [f.name for f in grown_pred])
        self.assertNotEqual([f.read_bytes() for f in first_pred], [f.read_bytes() for f in grown_pred])


if __name__ == "__main__":
    unittest.main(verbosity=2)
