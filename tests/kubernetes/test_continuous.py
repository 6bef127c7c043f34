"""Continuous mode (kubernetes/components/continuous): the CronJob's settings, and what its two containers
actually do. The container scripts are taken from the rendered CronJob and run with bash on this machine,
in a pod emulated with one directory per volume: every path a container mounts is rewritten to its
volume's directory (as the mount makes it appear in the real pod), ConfigMap keys are files in the config
volume, and stub `cube-inventory` and `nextflow` executables first on PATH record their arguments and
exit with the status a test chooses.

Run: .venv/bin/python -m pytest tests/kubernetes   (scripts/test does)
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "kubernetes"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
# Every overlay that renders a CronJob is a continuous one; each of them gets every test below.
CONTINUOUS = [o for o in OVERLAYS if any(x["kind"] == "CronJob" for x in kustomize_lite.build(o))]
IDS = [o.name for o in CONTINUOUS]
CHANGED = "X0058_Y0056\tchanged\t2 new acquisitions\nX0059_Y0056\tnew\tnot in the previous inventory\n"


def one(objects, kind):
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def rendered(overlay):
    objects = kustomize_lite.build(overlay)
    cron = one(objects, "CronJob")
    return objects, cron, cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def params_of(objects):
    return yaml.safe_load(one(objects, "ConfigMap")["data"]["params.yaml"])


def test_there_are_continuous_overlays_for_generic_and_eolab():
    assert {o.name for o in CONTINUOUS} == {"continuous", "eolab-continuous"}
    for overlay in OVERLAYS:
        objects = kustomize_lite.build(overlay)
        kinds = [o["kind"] for o in objects]
        # Never a one-shot run next to the scheduled ones.
        assert kinds.count("Job") + kinds.count("CronJob") == 1, overlay.name


# ---------------------------------------------------------------- the CronJob's settings


def runs_per_day(schedule):
    """How many times a day a `minute hour * * *` schedule fires (numbers, lists, ranges, steps)."""
    fields = schedule.split()
    assert len(fields) == 5, schedule
    minute, hour, *days = fields
    assert re.fullmatch(r"\d+", minute), f"{schedule}: at most once an hour"
    assert days == ["*", "*", "*"], f"{schedule}: the same every day"
    hours = set()
    for part in hour.split(","):
        span, _, step = part.partition("/")
        lo, hi = (0, 23) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        hours |= set(range(lo, hi + 1, int(step or 1)))
    return len(hours)


def test_runs_per_day_reads_cron_hours():
    assert runs_per_day("17 */3 * * *") == 8
    assert runs_per_day("0 6 * * *") == 1
    assert runs_per_day("5 1-23/6,2 * * *") == 5


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_cronjob_polls_every_few_hours_and_never_overlaps(overlay):
    _, cron, pod = rendered(overlay)
    spec = cron["spec"]
    # The cube changes about daily, at varying times: several cheap checks a day, not one daily run.
    per_day = runs_per_day(spec["schedule"])
    assert 4 <= per_day <= 12, spec["schedule"]
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < 24 * 3600 / per_day
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert spec.get("suspend", False) is False
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_cronjob_pod_is_the_head_jobs_plus_a_check(overlay):
    objects, cron, pod = rendered(overlay)
    assert not [o for o in objects if o["kind"] == "Job"]
    (check,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert check["name"] == "check"
    staging = one(objects, "Pod")["spec"]["containers"][0]["image"]
    registry, _, tag = staging.rpartition("/treesits-gdal-tools:")
    assert registry and tag, staging
    assert check["image"] == staging  # the same gdal-tools image as everywhere else in the overlay
    assert main["image"] == f"{registry}/treesits-submitter:{tag}"
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]

    # The check's answer goes through an emptyDir that both containers mount.
    state = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    check_mounts = {m["name"]: m for m in check["volumeMounts"]}
    main_mounts = {m["name"]: m for m in main["volumeMounts"]}
    shared = state & set(check_mounts) & set(main_mounts)
    assert len(shared) == 1, shared
    assert not check_mounts[shared.pop()].get("readOnly")

    # The check reads the cube where the pipeline's tasks do, read-only.
    params = params_of(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (cube_mount,) = [m for m in check["volumeMounts"] if m["mountPath"] == params["cube"]]
    assert cube_mount["readOnly"] is True
    assert volumes[cube_mount["name"]]["persistentVolumeClaim"] == {"claimName": params["k8s_pvc"], "readOnly": True}
    # The launch directory (Nextflow's history, what -resume resumes) is on the work volume.
    launch = one(objects, "ConfigMap")["data"]["NXF_LAUNCH_DIR"]
    (work_mount,) = [m for m in main["volumeMounts"] if launch.startswith(m["mountPath"] + "/")]
    assert volumes[work_mount["name"]]["persistentVolumeClaim"]["claimName"] == "treesits-work"


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_continuous_params_keep_one_map_current(overlay):
    params = params_of(kustomize_lite.build(overlay))
    assert params["incremental"] is True
    assert re.fullmatch(r"[1-9]\d*[MD]", params["window"]), params["window"]
    assert params["outdir"].startswith("s3://") and "run-" not in params["outdir"]


# ---------------------------------------------------------------- the containers, run for real


STUB = """#!{python}
import json, os, sys
with open({log!r}, "a") as f:
    env = {{k: v for k, v in os.environ.items() if k.startswith(("AWS_", "NXF_"))}}
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": env}}) + "\\n")
sys.stdout.write({stdout!r})
sys.stderr.write({stderr!r})
sys.exit({status})
"""


class EmulatedPod:
    """The CronJob's pod on this machine. Volumes are directories under tmp (a ConfigMap volume one per
    container, its files seen through that container's mounts); a container's command, args, working
    directory and env values have its mount paths rewritten to the volumes' directories."""

    def __init__(self, objects, pod, tmp: Path, check_status: int, check_stdout="", check_stderr=""):
        self.pod, self.tmp = pod, tmp
        self.cm = one(objects, "ConfigMap")
        self.stubs, self.calls_log = tmp / "stubs", tmp / "calls"
        self.stubs.mkdir()
        self.calls_log.mkdir()
        self.stub("cube-inventory", check_status, check_stdout, check_stderr)
        self.stub("nextflow", 0, "N E X T F L O W\n", "")

    def stub(self, name, status, stdout, stderr):
        path = self.stubs / name
        path.write_text(STUB.format(python=sys.executable, log=str(self.calls_log / name), status=status,
                                    stdout=stdout, stderr=stderr))
        path.chmod(0o755)

    def calls(self, name):
        log = self.calls_log / name
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def volume_dir(self, volume, container):
        if "configMap" in volume:
            assert volume["configMap"]["name"] == self.cm["metadata"]["name"]
            path = self.tmp / "configmap" / container["name"]
            if not path.exists():
                path.mkdir(parents=True)
                for key, text in self.cm["data"].items():
                    (path / key).write_text(self.rewrite(text, container))
            return path
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, volume
        path = self.tmp / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mounts(self, container):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts") or []}

    def rewrite(self, text, container):
        mounts = self.mounts(container)
        if not mounts:
            return text
        # One pass (a volume's directory may itself start with a mount path such as /tmp), longest first;
        # a path that starts with a mount path, not a piece of a longer name or of an s3:// key.
        alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
        pattern = r"(?<![\w/.:-])(" + alternatives + r")(?=/|[^\w.-]|$)"
        return re.sub(pattern, lambda m: str(self.volume_dir(mounts[m.group(1)], container)), text)

    def host_path(self, container, path):
        return Path(self.rewrite(path, container))

    def run(self, container):
        env = {"PATH": f"{self.stubs}:{os.environ['PATH']}", "HOME": str(self.tmp), "LANG": "C.UTF-8"}
        for e in container.get("env") or []:
            ref = e.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["name"] == self.cm["metadata"]["name"]
                env[e["name"]] = self.rewrite(self.cm["data"][ref["configMapKeyRef"]["key"]], container)
            elif "secretKeyRef" in ref:
                env[e["name"]] = f"from-secret-{ref['secretKeyRef']['key']}"
            else:
                env[e["name"]] = self.rewrite(e["value"], container)
        argv = [self.rewrite(a, container) for a in container["command"] + (container.get("args") or [])]
        # No workingDir: the emulation's own directory (it lies under /tmp, which a container may mount).
        cwd = self.rewrite(container["workingDir"], container) if "workingDir" in container else str(self.tmp)
        for volume in self.mounts(container).values():
            self.volume_dir(volume, container)
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)

    def run_job(self):
        """Init containers in order, then (only if all of them succeeded, as the kubelet does) the main one."""
        (main,) = self.pod["containers"]
        inits = [self.run(c) for c in self.pod.get("initContainers") or []]
        if any(r.returncode != 0 for r in inits):
            return inits, None
        return inits, self.run(main)


def emulate(overlay, tmp_path, status, stdout="", stderr="", edit_params=None):
    objects, _, pod = rendered(overlay)
    if edit_params:
        cm = one(objects, "ConfigMap")
        cm["data"]["params.yaml"] = edit_params(cm["data"]["params.yaml"])
    return objects, pod, EmulatedPod(objects, pod, tmp_path, status, stdout, stderr)


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_nothing_changed_ends_the_job_without_nextflow(overlay, tmp_path):
    _, pod, emulated = emulate(overlay, tmp_path, status=3)
    (init,), main = emulated.run_job()
    assert init.returncode == 0, init.stderr
    assert "no tile changed" in init.stdout
    assert main is not None and main.returncode == 0, main.stderr
    assert main.stdout.splitlines() == ["no new acquisitions: nothing to do"]
    assert len(emulated.calls("cube-inventory")) == 1
    assert emulated.calls("nextflow") == []


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_changed_tiles_run_the_pipeline_once_incrementally_and_resumed(overlay, tmp_path):
    objects, pod, emulated = emulate(overlay, tmp_path, status=0, stdout=CHANGED)
    (init,), main = emulated.run_job()
    assert init.returncode == 0, init.stderr
    # The check's log says why the run happens: the changed tiles, one per line.
    assert "2 tile(s) changed" in init.stdout and CHANGED in init.stdout
    assert main is not None and main.returncode == 0, main.stderr
    assert "2 tile(s) changed: running the pipeline" in main.stdout and "N E X T F L O W" in main.stdout

    (call,) = emulated.calls("nextflow")
    (container,) = pod["containers"]
    data = one(objects, "ConfigMap")["data"]
    argv = call["argv"]
    assert argv[:2] == ["run", "/pipeline/main.nf"]
    assert "-resume" in argv
    assert argv[argv.index("--incremental") + 1] == "true"
    assert argv[argv.index("-profile") + 1] == data["NXF_PROFILES"]
    params_file = Path(argv[argv.index("-params-file") + 1])
    assert yaml.safe_load(params_file.read_text()) == yaml.safe_load(data["params.yaml"])
    assert "\nk8s {" in Path(argv[argv.index("-c") + 1]).read_text()
    # Launch and work directories on the work volume: -resume finds the last run's history there.
    (work_volume,) = [v for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "treesits-work"]
    work = emulated.volume_dir(work_volume, container)
    assert Path(call["cwd"]) == emulated.host_path(container, data["NXF_LAUNCH_DIR"])
    assert Path(call["cwd"]).is_relative_to(work)
    assert Path(argv[argv.index("-work-dir") + 1]) == emulated.host_path(container, data["NXF_WORK"])
    assert Path(argv[argv.index("-work-dir") + 1]).is_relative_to(work)
    assert call["env"]["AWS_ACCESS_KEY_ID"] == "from-secret-AWS_ACCESS_KEY_ID"


@pytest.mark.parametrize("status", [1, 2, 139])
@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_a_failing_check_fails_the_job_and_never_starts_nextflow(overlay, status, tmp_path):
    _, pod, emulated = emulate(overlay, tmp_path, status=status,
                               stderr="cube-inventory: error: /cube: no datacube-definition.prj\n")
    (init,), main = emulated.run_job()
    assert init.returncode != 0
    assert "no datacube-definition.prj" in init.stderr and f"status {status}" in init.stderr
    assert main is None
    # Even started by hand after the failed check, the main container refuses to run.
    (container,) = pod["containers"]
    forced = emulated.run(container)
    assert forced.returncode != 0 and f"status {status}" in forced.stderr
    assert emulated.calls("nextflow") == []


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_main_container_without_an_answer_does_not_run(overlay, tmp_path):
    _, pod, emulated = emulate(overlay, tmp_path, status=0)
    (container,) = pod["containers"]
    result = emulated.run(container)  # the check never ran: no check.rc
    assert result.returncode != 0
    assert emulated.calls("nextflow") == []


@pytest.mark.parametrize("overlay", CONTINUOUS, ids=IDS)
def test_check_compares_the_cube_with_the_inventory_published_at_outdir(overlay, tmp_path):
    objects, pod, emulated = emulate(overlay, tmp_path, status=3)
    emulated.run_job()
    params = params_of(objects)
    (check,) = pod["initContainers"]
    (call,) = emulated.calls("cube-inventory")
    assert call["argv"] == ["check", "--cube", str(emulated.host_path(check, params["cube"])),
                            "--previous", params["outdir"].rstrip("/") + "/inventory.json"]
    assert emulated.host_path(check, params["cube"]) != Path(params["cube"])  # the cube is mounted there
    assert call["env"]["AWS_SECRET_ACCESS_KEY"] == "from-secret-AWS_SECRET_ACCESS_KEY"
    # GDAL's /vsis3/ settings for a custom S3 endpoint, as conf/s3.config sets them for the tasks.
    if params["s3_endpoint"]:
        assert call["env"]["AWS_S3_ENDPOINT"] == re.sub(r"^https?://", "", params["s3_endpoint"])
        assert call["env"]["AWS_VIRTUAL_HOSTING"] == "FALSE"
        assert call["env"]["AWS_HTTPS"] == ("NO" if params["s3_endpoint"].startswith("http://") else "YES")
    else:
        assert "AWS_S3_ENDPOINT" not in call["env"]


@pytest.mark.parametrize(
    "line, previous",
    [
        ('outdir: "s3://maps/forest/"  # the live map', "s3://maps/forest/inventory.json"),
        ("outdir: '/work/maps'", "/work/maps/inventory.json"),
        ("outdir: s3://maps/current", "s3://maps/current/inventory.json"),
    ],
)
def test_check_reads_outdir_as_yaml_writes_it(line, previous, tmp_path):
    def edit(text):
        return re.sub(r"^outdir:.*$", line, text, flags=re.M)

    objects, pod, emulated = emulate(CONTINUOUS[0], tmp_path, status=3, edit_params=edit)
    assert yaml.safe_load(edit("outdir: x"))  # still YAML
    (init,), _ = emulated.run_job()
    assert init.returncode == 0, init.stderr
    (check,) = pod["initContainers"]
    (call,) = emulated.calls("cube-inventory")
    assert call["argv"][call["argv"].index("--previous") + 1] == emulated.rewrite(previous, check)


def test_the_real_check_starts_nextflow_only_after_an_acquisition_lands(tmp_path):
    """The check container with the real cube-inventory (target/release) on a cube of empty Level-2
    files (it reads listings only) and a map published at a local outdir."""
    binary = ROOT / "target/release/cube-inventory"
    assert binary.exists(), f"{binary} is missing: cargo build --release -p cube-inventory"
    # A local outdir as the pod sees it: in the check container's scratch volume (/tmp).
    outdir_in_pod = "/tmp/maps"

    def edit(text):
        return re.sub(r"^outdir:.*$", f"outdir: {outdir_in_pod}", text, flags=re.M)

    objects, pod, emulated = emulate(CONTINUOUS[0], tmp_path, status=0, edit_params=edit)
    # The real program instead of the stub (the stubs directory is first on the pod's PATH).
    (emulated.stubs / "cube-inventory").unlink()
    (emulated.stubs / "cube-inventory").symlink_to(binary)
    (check,) = pod["initContainers"]
    outdir = emulated.host_path(check, outdir_in_pod)
    assert outdir != Path(outdir_in_pod)
    outdir.mkdir()
    cube = emulated.host_path(check, params_of(objects)["cube"])
    cube.mkdir(parents=True, exist_ok=True)
    for tile in ["X0058_Y0056", "X0059_Y0056"]:
        (cube / tile).mkdir()
        for date, sensor in [("20250601", "SEN2A"), ("20250606", "SEN2B")]:
            for product in ["BOA", "QAI"]:
                (cube / tile / f"{date}_LEVEL2_{sensor}_{product}.tif").touch()
    made = subprocess.run([str(binary), "scan", "--cube", str(cube), "--out", str(outdir / "inventory.json")],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr

    (init,), main = emulated.run_job()
    assert init.returncode == 0, init.stderr
    assert "no tile changed" in init.stdout
    assert main.returncode == 0 and emulated.calls("nextflow") == []

    for product in ["BOA", "QAI"]:
        (cube / "X0059_Y0056" / f"20250611_LEVEL2_SEN2A_{product}.tif").touch()
    (init,), main = emulated.run_job()
    assert init.returncode == 0, init.stderr
    assert "X0059_Y0056\tchanged\tadded 2025-06-11 SEN2A" in init.stdout
    assert "X0058_Y0056" not in init.stdout
    assert main.returncode == 0, main.stderr
    (call,) = emulated.calls("nextflow")
    assert "--incremental" in call["argv"]


def test_check_without_outdir_fails_before_asking(tmp_path):
    _, _, emulated = emulate(CONTINUOUS[0], tmp_path, status=0,
                             edit_params=lambda t: re.sub(r"^outdir:.*\n", "", t, flags=re.M))
    (init,), main = emulated.run_job()
    assert init.returncode != 0 and "must set outdir and cube" in init.stderr
    assert main is None and emulated.calls("cube-inventory") == []


def test_the_emulation_catches_a_main_container_that_ignores_the_check(tmp_path):
    # The tests above are only worth something if a wrong script makes them fail: here the main container
    # runs Nextflow even when the check found nothing, and the stub sees it.
    objects, pod, emulated = emulate(CONTINUOUS[0], tmp_path, status=3)
    (container,) = pod["containers"]
    script = container["args"][0]
    assert 'nothing to do"; exit 0 ;;' in script
    container["args"][0] = script.replace('nothing to do"; exit 0 ;;', 'nothing to do" ;;')
    (init,), main = emulated.run_job()
    assert init.returncode == 0 and main.returncode == 0
    assert len(emulated.calls("nextflow")) == 1


# ---------------------------------------------------------------- shellcheck


def shellcheck(path):
    binary = shutil.which("shellcheck") or str(ROOT / ".venv/bin/shellcheck")
    return subprocess.run([binary, "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True)


def container_scripts(objects):
    """(name, script) for every `bash -c` script and every script file a container runs from the ConfigMap."""
    data = one(objects, "ConfigMap")["data"]
    for o in objects:
        for spec in kustomize_lite.pod_specs(o):
            for c in kustomize_lite.containers(spec):
                argv = c.get("command", []) + c.get("args", [])
                name = f"{o['metadata']['name']}/{c['name']}"
                if argv[:1] == ["bash"] and argv[-2:-1] == ["-c"]:
                    yield name, argv[-1]
                elif argv[:1] == ["bash"] and argv[1].startswith("/config/"):
                    yield name, data[argv[1].removeprefix("/config/")]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_container_scripts_pass_shellcheck(overlay, tmp_path):
    scripts = list(container_scripts(kustomize_lite.build(overlay)))
    assert len(scripts) == (2 if overlay in CONTINUOUS else 1), [n for n, _ in scripts]
    for name, script in scripts:
        path = tmp_path / name.replace("/", "-")
        # The options a container passes (bash -euo pipefail -c) as the script's own first line.
        path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + script)
        result = shellcheck(path)
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


def test_shellcheck_catches_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrc=$(cat $1)\ncd $rc\n")
    result = shellcheck(bad)
    assert result.returncode != 0 and "SC2086" in result.stdout
