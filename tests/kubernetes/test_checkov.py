"""checkov (pinned in tests/kubernetes/requirements-checkov.txt) on every rendered kustomize target and on
the cluster-scoped policy: every finding must be accepted, with its reason, in checkov-accepted.yaml,
and every accepted entry must still be found (a fixed finding is removed from the list).

checkov lives in its own virtual environment, .venv/checkov, because it pins a boto3 that conflicts with
requirements-dev.txt; this test makes it on first use (pip from PyPI, about a minute), later runs reuse it.

Run: .venv/bin/python -m pytest tests/kubernetes   (scripts/test does)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
K8S = ROOT / "kubernetes"
TARGETS = [K8S / "base"] + sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
VENV = ROOT / ".venv/checkov"
REQUIREMENTS = HERE / "requirements-checkov.txt"


@pytest.fixture(scope="module")
def checkov():
    binary = VENV / "bin/checkov"
    pinned = next(line for line in REQUIREMENTS.read_text().splitlines() if line.startswith("checkov=="))
    if binary.exists():
        version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
        if f"checkov=={version}" != pinned:
            binary.unlink()  # a stale environment: remade below with the pinned versions
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin/python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                       check=True)
    return binary


def run_checkov(binary, tmp_path, framework="kubernetes"):
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false", LOG_LEVEL="WARNING")
    run = subprocess.run(
        [str(binary), "--framework", framework, "--output", "json", "--quiet", "--compact", "--skip-download",
         "--directory", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    reports = json.loads(run.stdout) if run.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    found = {}
    for report in reports:
        assert report["check_type"] == framework
        assert report["summary"]["passed"] > 20, "checkov ran almost no checks"
        for f in report["results"]["failed_checks"]:
            if framework == "dockerfile":  # by image directory
                found.setdefault(Path(f["file_path"]).parent.name, set()).add(f["check_id"])
                continue
            # "Kind.namespace.name" (namespaced) or "Kind.name"; our names have no dots.
            parts = f["resource"].split(".")
            found.setdefault(Path(f["file_path"]).stem, set()).add((f["check_id"], f"{parts[0]}/{parts[-1]}"))
    return found


def accepted(section="accepted"):
    entries = yaml.safe_load((HERE / "checkov-accepted.yaml").read_text())[section]
    for e in entries:
        assert len(e["why"]) > 80, f"{e['check']}: say why it is accepted"
    return entries


def expected_for(target_id, entries, present):
    """The accepted findings of one target: its entries, for the listed resources the target renders."""
    return {(e["check"], r) for e in entries if target_id in e.get("targets", [target_id])
            for r in e["resources"] if r in present}


def test_checkov_findings_are_exactly_the_accepted_ones(checkov, tmp_path):
    ids, present = {}, {}
    for target in TARGETS:
        target_id = str(target.relative_to(K8S))
        ids[target_id.replace("/", "-")] = target_id
        objects = kustomize_lite.build(target)
        present[target_id] = {f"{o['kind']}/{o['metadata']['name']}" for o in objects}
        text = yaml.safe_dump_all(objects, sort_keys=True)
        (tmp_path / f"{target_id.replace('/', '-')}.yaml").write_text(text)
    (tmp_path / "cluster.yaml").write_text((K8S / "cluster/task-pod-security.yaml").read_text())
    found = run_checkov(checkov, tmp_path)
    entries = accepted()
    assert not found.get("cluster"), f"the cluster policy: {found.get('cluster')}"
    for stem, target_id in ids.items():
        got, expected = found.get(stem, set()), expected_for(target_id, entries, present[target_id])
        assert got - expected == set(), f"{target_id}: new findings, fix them or accept them with a reason"
        assert expected - got == set(), f"{target_id}: accepted findings no longer reported, remove them"
    # Every entry is used somewhere (a check fixed everywhere leaves the list).
    for e in entries:
        assert any((e["check"], r) in found.get(stem, set()) for stem in ids for r in e["resources"]), e["check"]


def test_checkov_reports_what_it_should(checkov, tmp_path):
    # The comparison above means something only if checkov flags a bad pod: a root, privileged pod with a
    # hostPath volume and the default service account token.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "treesits"},
           "spec": {"containers": [{"name": "c", "image": "registry.example.org/x:1",
                                    "securityContext": {"privileged": True, "runAsUser": 0}}],
                    "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(pod))
    found = run_checkov(checkov, tmp_path)["bad"]
    checks = {c for c, _ in found}
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28"} <= checks, sorted(checks)
    assert all(r == "Pod/bad" for _, r in found)


def test_checkov_dockerfile_findings_are_exactly_the_accepted_ones(checkov):
    found = run_checkov(checkov, ROOT / "containers", framework="dockerfile")
    images = sorted(p.parent.name for p in (ROOT / "containers").glob("*/Dockerfile"))
    entries = accepted("accepted_dockerfiles")
    for image in images:
        expected = {e["check"] for e in entries if image in e["resources"]}
        assert found.get(image, set()) == expected, f"containers/{image}/Dockerfile: {found.get(image)} vs {expected}"
    assert set(found) <= set(images)
