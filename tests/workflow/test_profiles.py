"""The pipeline's configuration, resolved per process for every profile combination we document.

tests/workflow/resolve_config.groovy evaluates nextflow.config (and the -c files) the way Nextflow does:
profiles in Nextflow's order, withLabel then withName (simple and fully qualified names), generic
process settings last, resourceLimits, the Kubernetes pod options. Its header says what it does not
model. These tests assert the resolved values: an image for every task under a container profile,
fully qualified; predict's GPU and placement under the gpu profile; resources for every label; retries;
the security context of every Kubernetes task pod; and the submitter Job's configuration (each overlay's
run.env profiles, params.yaml and cluster.config, as kubernetes/base/submitter-job.yaml passes them).

Run: python3 tests/workflow/test_profiles.py
"""

import json
import os
import re
import tempfile
import unittest
from pathlib import Path

import yaml

from groovy_cli import REPO, groovy  # noqa: E402  (this directory is on sys.path when run as a script)
HERE = Path(__file__).resolve().parent
GB = 1 << 30
HOUR = 3600 * 1000

# Profile combinations named in README.md and docs/operations.md (run from a laptop).
LAPTOP = {
    "standard": [],
    "test": ["test"],
    "docker": ["docker"],
    "test,docker": ["test", "docker"],
    "k8s": ["k8s"],
    "k8s,s3": ["k8s", "s3"],
    "k8s,s3,gpu": ["k8s", "s3", "gpu"],
    "k8s,s3,fusion,gpu": ["k8s", "s3", "fusion", "gpu"],
}
# The README's laptop-to-cluster command line.
README_GPU_PARAMS = {"gpu_node_selector": "node.cloudferro.com/type=gpu", "gpu_toleration_key": "node.cloudferro.com/type",
                     "s3_endpoint": "https://s3.waw3-1.cloudferro.com", "cube": "s3://eodata-cube/level2",
                     "k8s_pvc": "treesits-cube"}

# Fully qualified: a registry host (with a dot or a port), a path, a tag.
QUALIFIED = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+(:[0-9]+)?(/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$")
# Pod-level security context fields (PodSecurityContext, Kubernetes 1.30); Nextflow's pod and k8s
# securityContext go to the pod spec, so container-only fields there would be dropped by the API server.
POD_SECURITY_FIELDS = {"appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot", "runAsUser",
                       "seLinuxChangePolicy", "seLinuxOptions", "seccompProfile", "supplementalGroups",
                       "supplementalGroupsPolicy", "sysctls", "windowsOptions"}


def spec(profiles: list, params: dict = None, configs: list = None, parser: str = "v2") -> dict:
    # No -profile: Nextflow applies `standard`.
    return {"profiles": profiles or ["standard"], "params": params or {}, "configs": configs or [], "parser": parser}


def resolve_all(specs: list, repo: Path = REPO) -> list:
    """Resolves many specs in one JVM (a JVM start costs seconds)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(specs, f)
    try:
        return json.loads(groovy(str(HERE / "resolve_config.groovy"), str(repo), f.name))
    finally:
        os.unlink(f.name)


def resolve(profiles: list, params: dict = None, configs: list = None, parser: str = "v2", repo: Path = REPO) -> dict:
    [r] = resolve_all([spec(profiles, params, configs, parser)], repo)
    return r


def overlay_settings(overlay: Path) -> tuple:
    """What the submitter Job of a kustomize overlay runs with: (profiles, params, -c files).

    Walks `resources:` up to the base; the nearest params.yaml and cluster.config win, run.env entries
    merge (configMapGenerator behavior: merge)."""
    chain, d = [], overlay
    while True:
        chain.append(d)
        k = yaml.safe_load((d / "kustomization.yaml").read_text())
        parents = [r for r in k.get("resources", []) if (d / r / "kustomization.yaml").is_file()]
        if not parents:
            break
        d = (d / parents[0]).resolve()
    env, params, cluster = {}, None, None
    for level in reversed(chain):
        if (level / "run.env").is_file():
            for line in (level / "run.env").read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    env[key.strip()] = value.strip()
        if (level / "params.yaml").is_file():
            params = yaml.safe_load((level / "params.yaml").read_text())
        if (level / "cluster.config").is_file():
            cluster = str((level / "cluster.config").relative_to(REPO))
    return env["NXF_PROFILES"].split(","), params, [cluster]


OVERLAYS = sorted(p for p in (REPO / "kubernetes/overlays").iterdir() if (p / "kustomization.yaml").is_file())


class ProfileResolutionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        runs = {}
        for name, profiles in LAPTOP.items():
            runs[name] = (profiles, README_GPU_PARAMS if "k8s" in profiles else {}, [])
        for overlay in OVERLAYS:
            runs[f"submitter:{overlay.name}"] = overlay_settings(overlay)
        keys = [(name, parser) for name in runs for parser in ("v1", "v2")]
        results = resolve_all([spec(*runs[name], parser=parser) for name, parser in keys])
        cls.resolved = {}
        for (name, parser), r in zip(keys, results):
            cls.resolved.setdefault(name, {})[parser] = r

    def each(self, kind=None):
        for name, by_parser in self.resolved.items():
            if kind == "k8s" and by_parser["v2"]["processes"]["PREDICT"]["executor"] != "k8s":
                continue
            yield name, by_parser["v2"]

    def test_the_submitter_overlays_are_found(self):
        self.assertEqual({o.name for o in OVERLAYS}, {"continuous", "eolab", "eolab-continuous", "generic"})
        self.assertEqual(overlay_settings(REPO / "kubernetes/overlays/eolab")[0], ["k8s", "s3", "gpu"])
        self.assertEqual(overlay_settings(REPO / "kubernetes/overlays/generic")[0], ["k8s", "s3"])
        self.assertTrue(overlay_settings(REPO / "kubernetes/overlays/eolab-continuous")[1]["incremental"])

    def test_both_config_parsers_resolve_every_combination_alike(self):
        # v1 applies profiles in definition order, v2 in command-line order: our profiles must not
        # depend on it. (The timestamps in the report file names differ between the two runs.)
        for name, by_parser in self.resolved.items():
            self.assertEqual(by_parser["v1"]["processes"], by_parser["v2"]["processes"], name)
            self.assertEqual(by_parser["v1"]["params"], by_parser["v2"]["params"], name)
            for scope in ("k8s", "docker", "executor", "aws", "env", "fusion", "wave"):
                self.assertEqual(by_parser["v1"]["scopes"].get(scope), by_parser["v2"]["scopes"].get(scope), (name, scope))

    def test_every_process_is_resolved(self):
        modules = sorted(p.parent.name for p in REPO.glob("modules/local/*/main.nf"))
        for name, r in self.each():
            self.assertEqual(sorted(p["module"].rsplit("/", 1)[1] for p in r["processes"].values()), modules, name)
        fqn = {k: v["fqn"] for k, v in self.resolved["k8s"]["v2"]["processes"].items()}
        self.assertEqual(fqn["SYNTH"], "SYNTH")
        self.assertEqual(fqn["CUBE_INVENTORY"], "TREESITS:CUBE_INVENTORY")
        self.assertEqual(fqn["SAMPLE_EXTRACT"], "TRAINING_DATA:SAMPLE_EXTRACT")

    def test_container_profiles_give_every_process_a_fully_qualified_image(self):
        for name, r in self.each():
            engine = r["scopes"].get("docker", {}).get("enabled") or r["processes"]["PREDICT"]["executor"] == "k8s"
            for proc, p in r["processes"].items():
                if not engine:
                    continue
                self.assertIsNotNone(p["container"], f"{name}: {proc} has no container image")
                self.assertRegex(p["container"], QUALIFIED, f"{name}: {proc}")
        registry = "ghcr.io/treesits"
        for name in ("docker", "k8s,s3"):
            procs = self.resolved[name]["v2"]["processes"]
            for proc in ("AOI_SELECT", "CUBE_INVENTORY", "CUBE_EXTRACT", "MOSAIC", "ASSESS", "SAMPLE_EXTRACT", "SYNTH"):
                self.assertEqual(procs[proc]["container"], f"{registry}/treesits-gdal-tools:0.1.0", (name, proc))
            # device auto: the CUDA image (it falls back to the CPU when there is no GPU).
            self.assertEqual(procs["PREDICT"]["container"], f"{registry}/treesits-predict-cuda:0.1.0", name)
        cpu = resolve(["docker"], {"device": "cpu", "container_registry": "registry.example.org/ml", "image_tag": "2.0"})
        self.assertEqual(cpu["processes"]["PREDICT"]["container"], "registry.example.org/ml/treesits-predict-cpu:2.0")
        self.assertEqual(cpu["processes"]["MOSAIC"]["container"], "registry.example.org/ml/treesits-gdal-tools:2.0")

    def test_the_executor_and_the_engine_per_profile(self):
        for name in ("standard", "test", "docker", "test,docker"):
            for proc, p in self.resolved[name]["v2"]["processes"].items():
                self.assertEqual(p["executor"], "local", (name, proc))
        self.assertTrue(self.resolved["docker"]["v2"]["scopes"]["docker"]["enabled"])
        self.assertNotIn("docker", self.resolved["test"]["v2"]["scopes"])
        for name, r in self.each("k8s"):
            self.assertEqual({p["executor"] for p in r["processes"].values()}, {"k8s"}, name)
            self.assertEqual(r["scopes"]["k8s"]["computeResourceType"], "Job", name)
            self.assertEqual(r["scopes"]["k8s"]["namespace"], "treesits", name)
            self.assertEqual(r["scopes"]["k8s"]["serviceAccount"], "treesits-nextflow", name)
        submitter = self.resolved["submitter:eolab"]["v2"]["scopes"]["k8s"]
        self.assertEqual((submitter["storageClaimName"], submitter["storageMountPath"]), ("treesits-work", "/work"))

    def test_every_module_label_has_resources_that_grow_on_retry(self):
        generic = self.resolved["standard"]["v2"]["generic"]
        selectors = self.resolved["standard"]["v2"]["selectors"]
        for name, r in self.each():
            for proc, p in r["processes"].items():
                self.assertEqual(len(p["labels"]), 1, f"{proc}: one resource label")
                self.assertLessEqual({"cpus", "memory", "time"}, set(selectors.get(f"withLabel:{p['labels'][0]}", [])),
                                     f"{proc}: label {p['labels'][0]} does not set cpus, memory and time")
                first, last = p["attempt1"], p["last_attempt"]
                self.assertIsInstance(first["cpus"], int, (name, proc))
                self.assertGreaterEqual(first["memory"]["bytes"], GB, (name, proc))
                self.assertGreaterEqual(first["time"]["millis"], HOUR, (name, proc))
                limits = p["resourceLimits"]
                self.assertEqual(last["memory"]["bytes"], min(3 * first["memory"]["bytes"], limits["memory"]["bytes"]), (name, proc))
                self.assertEqual(last["time"]["millis"], min(3 * first["time"]["millis"], limits["time"]["millis"]), (name, proc))
        self.assertIn("resourceLimits", generic)
        k8s = self.resolved["k8s"]["v2"]["processes"]
        self.assertEqual((k8s["CUBE_INVENTORY"]["attempt1"]["cpus"], k8s["CUBE_INVENTORY"]["attempt1"]["memory"]["bytes"]), (1, GB))
        self.assertEqual((k8s["CUBE_EXTRACT"]["attempt1"]["cpus"], k8s["CUBE_EXTRACT"]["attempt1"]["memory"]["bytes"]), (4, 4 * GB))
        self.assertEqual((k8s["PREDICT"]["attempt1"]["cpus"], k8s["PREDICT"]["attempt1"]["memory"]["bytes"]), (4, 8 * GB))
        self.assertEqual(k8s["PREDICT"]["last_attempt"]["memory"]["bytes"], 24 * GB)
        # sample-extract reads every tile of the cube in parallel itself: one task, many CPUs.
        self.assertEqual((k8s["SAMPLE_EXTRACT"]["attempt1"]["cpus"], k8s["SAMPLE_EXTRACT"]["attempt1"]["memory"]["bytes"]), (8, 8 * GB))
        self.assertEqual(k8s["SAMPLE_EXTRACT"]["last_attempt"]["memory"]["bytes"], 24 * GB)
        self.assertEqual(k8s["PREDICT"]["resourceLimits"], {"cpus": 16, "memory": {"bytes": 64 * GB}, "time": {"millis": 24 * HOUR}})

    def test_the_test_profile_caps_every_task(self):
        procs = self.resolved["test"]["v2"]["processes"]
        for proc, p in procs.items():
            self.assertEqual(p["resourceLimits"], {"cpus": 2, "memory": {"bytes": 6 * GB}, "time": {"millis": HOUR}}, proc)
            self.assertLessEqual(p["attempt1"]["cpus"], 2, proc)
            self.assertLessEqual(p["last_attempt"]["memory"]["bytes"], 6 * GB, proc)
        self.assertEqual(procs["CUBE_EXTRACT"]["attempt1"]["cpus"], 2)            # process_medium asks for 4
        self.assertEqual(procs["PREDICT"]["attempt1"]["memory"]["bytes"], 6 * GB)  # process_gpu asks for 8 GB
        self.assertEqual(procs["SAMPLE_EXTRACT"]["attempt1"]["cpus"], 2)          # process_high asks for 8
        self.assertEqual(self.resolved["test"]["v2"]["params"]["model"], f"{REPO}/models/fixtures/lstm.onnx")

    def test_killed_tasks_are_retried_and_failures_are_not(self):
        for name, r in self.each():
            for proc, p in r["processes"].items():
                self.assertEqual(p["errorStrategy"], {"exit137": "retry", "exit143": "retry", "exit1": "finish"}, (name, proc))
                self.assertEqual(p["maxRetries"], 2, (name, proc))
        self.assertIs(self.resolved["k8s"]["v2"]["processes"]["CUBE_INVENTORY"]["cache"], False)

    def test_the_gpu_profile_gives_predict_a_gpu_on_a_gpu_node(self):
        toleration = [{"key": "node.cloudferro.com/type", "operator": "Exists", "effect": "NoSchedule"}]
        cube = {"claim": "treesits-cube", "mountPath": "/cube", "readOnly": True}
        for name in ("k8s,s3,gpu", "k8s,s3,fusion,gpu", "submitter:eolab", "submitter:eolab-continuous"):
            r = self.resolved[name]["v2"]
            predict = r["processes"]["PREDICT"]
            self.assertEqual(predict["accelerator"], 1, name)  # number form: request = limit = 1
            self.assertEqual(predict["k8s_pod"]["tolerations"], toleration, name)
            self.assertEqual(predict["k8s_pod"]["nodeSelector"], "node.cloudferro.com/type=gpu", name)
            self.assertIn(cube, predict["k8s_pod"]["volumeClaims"], name)
            self.assertEqual(predict["container"], "ghcr.io/treesits/treesits-predict-cuda:0.1.0", name)
            self.assertEqual(r["params"]["device"], "cuda", name)
            for proc, p in r["processes"].items():
                if proc != "PREDICT":
                    self.assertIsNone(p["accelerator"], (name, proc))
                    self.assertEqual(p["k8s_pod"]["tolerations"], [], (name, proc))
                    self.assertIsNone(p["k8s_pod"]["nodeSelector"], (name, proc))
        # The training table reads the cube on a CPU node: no GPU, no GPU placement, but the cube claim.
        for name in ("k8s,s3,gpu", "k8s,s3,fusion,gpu", "submitter:eolab"):
            samples = self.resolved[name]["v2"]["processes"]["SAMPLE_EXTRACT"]
            self.assertEqual((samples["accelerator"], samples["k8s_pod"]["tolerations"], samples["k8s_pod"]["nodeSelector"]),
                             (None, [], None), name)
            self.assertIn(cube, samples["k8s_pod"]["volumeClaims"], name)
            self.assertEqual(samples["container"], "ghcr.io/treesits/treesits-gdal-tools:0.1.0", name)
        for name in ("k8s", "k8s,s3", "submitter:generic", "submitter:continuous"):
            predict = self.resolved[name]["v2"]["processes"]["PREDICT"]
            self.assertIsNone(predict["accelerator"], name)
            self.assertEqual(predict["k8s_pod"]["tolerations"], [], name)
        # gpu without placement params (the generic overlay's empty strings): a GPU, no selector.
        bare = resolve(["k8s", "gpu"], {"gpu_node_selector": "", "gpu_toleration_key": ""})["processes"]["PREDICT"]
        self.assertEqual((bare["accelerator"], bare["k8s_pod"]["tolerations"], bare["k8s_pod"]["nodeSelector"]), (1, [], None))

    def test_kubernetes_task_pods_run_restricted(self):
        """Pod Security `restricted`, as far as Nextflow's pod options reach: the pod-level context.

        Nextflow puts the pod directive's (and k8s.securityContext's) securityContext into the pod spec;
        allowPrivilegeEscalation and capabilities are container-level fields that no pod option sets
        (PodSpecBuilder writes a container securityContext only for `privileged: true` and capabilities
        Nextflow adds itself), see docs/decisions.md."""
        for name, r in self.each("k8s"):
            for proc, p in r["processes"].items():
                pod = p["k8s_pod"]
                ctx = pod["securityContext"]
                self.assertIsNotNone(ctx, (name, proc))
                self.assertIs(ctx.get("runAsNonRoot"), True, (name, proc))
                self.assertEqual(ctx.get("runAsUser"), 65532, (name, proc))
                self.assertEqual(ctx.get("runAsGroup"), 65532, (name, proc))
                self.assertEqual(ctx.get("seccompProfile"), {"type": "RuntimeDefault"}, (name, proc))
                self.assertLessEqual(set(ctx), POD_SECURITY_FIELDS, (name, proc))
                self.assertIs(pod["privileged"], False, (name, proc))
                self.assertEqual(p["pod_unknown"], [], (name, proc))
                if r["params"].get("k8s_pvc"):
                    self.assertIn({"claim": r["params"]["k8s_pvc"], "mountPath": "/cube", "readOnly": True},
                                  pod["volumeClaims"], (name, proc))


class ResolverSemanticsTest(unittest.TestCase):
    """The evaluator itself, on a small pipeline whose answers are known from Nextflow's documentation
    and source (script/ProcessConfig.groovy, config/parser/v1 and v2)."""

    @classmethod
    def setUpClass(cls):
        cls.fixture = HERE / "fixtures/resolver"

    def test_selectors_precedence_and_names(self):
        r = resolve(["standard"], repo=self.fixture)["processes"]
        # generic < process definition < withLabel < withName (simple, then fully qualified)
        self.assertEqual(r["ALPHA"]["attempt1"]["cpus"], 8)        # withName:'W:ALPHA' over withName:ALPHA over label
        self.assertEqual(r["ALPHA"]["attempt1"]["memory"]["bytes"], 3 * GB)  # withLabel over the module's memory
        self.assertEqual(r["BETA"]["attempt1"]["cpus"], 2)         # the module's own cpus over the generic 1
        self.assertEqual(r["BETA"]["container"], "reg.example.org/not-alpha:1")  # withName:'!ALPHA'
        # Each name is matched on its own: '!ALPHA' does not match ALPHA but does match W:ALPHA, so
        # ALPHA gets it too. (Negate fully qualified names as well, or use a label.)
        self.assertEqual(r["ALPHA"]["container"], "reg.example.org/not-alpha:1")
        self.assertIsNone(r["GAMMA"]["k8s_pod"]["nodeSelector"])
        self.assertEqual(r["GAMMA"]["attempt1"]["memory"]["bytes"], 5 * GB)  # withName:'BETA|GAMMA'
        self.assertEqual(r["GAMMA"]["attempt1"]["time"]["millis"], 2 * HOUR)  # generic time: nothing else sets it
        self.assertEqual(r["GAMMA"]["pod"], [{"env": "FROM", "value": "label"}])  # the label's pod replaces the generic pod

    def test_profile_order_depends_on_the_parser(self):
        # v1: profiles in the order they are defined (first, then second), whatever the command line says;
        # v2: in command-line order.
        for order, v1, v2 in [(["first", "second"], 20, 20), (["second", "first"], 20, 10)]:
            self.assertEqual(resolve(order, parser="v1", repo=self.fixture)["processes"]["BETA"]["attempt1"]["cpus"], v1, order)
            self.assertEqual(resolve(order, parser="v2", repo=self.fixture)["processes"]["BETA"]["attempt1"]["cpus"], v2, order)

    def test_cli_params_win_and_are_seen_by_the_config(self):
        r = resolve(["standard"], {"tag": "9.9"}, repo=self.fixture)
        self.assertEqual(r["params"]["tag"], "9.9")
        self.assertEqual(r["processes"]["BETA"]["container"], "reg.example.org/not-alpha:9.9")
        self.assertEqual(r["scopes"]["seen"]["tag"], "9.9")  # read while the config was parsed

    def test_unknown_profile_is_an_error(self):
        with self.assertRaises(AssertionError) as e:
            resolve(["nonesuch"], repo=self.fixture)
        self.assertIn("Unknown configuration profile", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
