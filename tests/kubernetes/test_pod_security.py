"""Pod Security "restricted" for everything treesits runs, checked on the rendered objects' values:
every pod of every overlay, and Nextflow's task pods as its k8s executor builds them from cluster.config
(with and without kubernetes/cluster/task-pod-security.yaml); plus what the profile does not cover:
read-only root file systems with an emptyDir /tmp, the cube read-only everywhere, the namespace's levels.

Run: .venv/bin/python -m pytest tests/kubernetes   (scripts/test does)
"""

import copy
import re
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402
import pod_security  # noqa: E402

from k8s_tree import K8S, OVERLAYS, ROOT, TARGET_IDS, TARGETS  # noqa: E402
IDS = TARGET_IDS
TASK_POLICY = K8S / "cluster/task-pod-security.yaml"
CUBE_CLAIM = "treesits-cube"
# Overlays for clusters older than Kubernetes 1.36 (no MutatingAdmissionPolicy): they enforce baseline.
PRE_136 = {"eolab", "eolab-continuous"}


def pods(objects):
    for o in objects:
        for spec in kustomize_lite.pod_specs(o):
            yield f"{o['kind']}/{o['metadata']['name']}", spec


def compliant_pod():
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "registry.example.org/x:1",
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


# ---------------------------------------------------------------- the checker itself


def test_checker_passes_a_compliant_pod():
    assert pod_security.violations(compliant_pod()) == []


@pytest.mark.parametrize("edit, expected, level", [
    (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile must be RuntimeDefault", "restricted"),
    (lambda p: p["securityContext"].update(runAsNonRoot=False), "runAsNonRoot must not be false", "restricted"),
    (lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot must be true", "restricted"),
    (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser must not be 0", "restricted"),
    (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
     "allowPrivilegeEscalation must be false", "restricted"),
    (lambda p: p["containers"][0]["securityContext"].pop("capabilities"), "capabilities must drop ALL", "restricted"),
    (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["NET_RAW"]),
     "capabilities.add ['NET_RAW'] not allowed", "baseline"),
    (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged must not be true", "baseline"),
    (lambda p: p.update(hostNetwork=True), "hostNetwork must not be true", "baseline"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath not allowed", "baseline"),
    (lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
     "type ['nfs'] not allowed", "restricted"),
    (lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]), "hostPort 80", "baseline"),
    (lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}), "must not be Unconfined", "baseline"),
    (lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
     "sysctl kernel.msgmax", "baseline"),
    (lambda p: p.setdefault("initContainers", []).append({"name": "i", "image": "x"}),
     "initContainers[i]: allowPrivilegeEscalation must be false", "restricted"),
])
def test_checker_finds_each_violation(edit, expected, level):
    pod = compliant_pod()
    edit(pod)
    found = pod_security.violations(pod, level)
    assert any(expected in v for v in found), found
    if level == "restricted":
        assert not any(expected in v for v in pod_security.violations(pod, "baseline")), "not a baseline control"


# ---------------------------------------------------------------- our pods


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_every_rendered_pod_meets_restricted(target):
    found = list(pods(kustomize_lite.build(target)))
    assert len(found) == 2, [n for n, _ in found]
    for name, spec in found:
        assert pod_security.violations(spec, "restricted") == [], name


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_every_container_has_a_read_only_root_and_an_emptydir_tmp(target):
    for name, spec in pods(kustomize_lite.build(target)):
        volumes = {v["name"]: v for v in spec["volumes"]}
        for where, c in pod_security.containers(spec):
            assert c["securityContext"].get("readOnlyRootFilesystem") is True, f"{name} {where}"
            (tmp,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]] and not tmp.get("readOnly"), f"{name} {where}"
            assert volumes[tmp["name"]]["emptyDir"].get("sizeLimit"), f"{name} {where}: unbounded /tmp"


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_the_cube_is_read_only_everywhere(target):
    objects = kustomize_lite.build(target)
    (pv,) = [o for o in objects if o["kind"] == "PersistentVolume"]
    assert pv["spec"]["nfs"]["readOnly"] is True and pv["spec"]["accessModes"] == ["ReadOnlyMany"]
    (pvc,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == CUBE_CLAIM]
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    mounted = 0
    for name, spec in pods(objects):
        cube = {v["name"] for v in spec["volumes"]
                if (v.get("persistentVolumeClaim") or {}).get("claimName") == CUBE_CLAIM}
        for v in spec["volumes"]:
            if v["name"] in cube:
                assert v["persistentVolumeClaim"].get("readOnly") is True, name
        for where, c in pod_security.containers(spec):
            for m in c.get("volumeMounts") or []:
                if m["name"] in cube:
                    mounted += 1
                    assert m.get("readOnly") is True, f"{name} {where} mounts the cube read-write"
    assert mounted >= 1  # the staging pod (and the continuous check) do mount it


@pytest.mark.parametrize("target", TARGETS, ids=IDS)
def test_namespace_pod_security_levels(target):
    (ns,) = [o for o in kustomize_lite.build(target) if o["kind"] == "Namespace"]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    expected = "baseline" if target.name in PRE_136 else "restricted"
    assert labels["pod-security.kubernetes.io/enforce"] == expected


# ---------------------------------------------------------------- Nextflow's task pods


def groovy_literal(text):
    """A Groovy list/map literal of numbers, booleans, quoted strings and nested maps, as Python."""
    tokens = re.findall(r"\[|\]|,|:|'[^']*'|\"[^\"]*\"|[\w.]+", text)
    pos = 0

    def value():
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "[":
            result, is_map = {}, None
            items = []
            while tokens[pos] != "]":
                key = value()
                if tokens[pos] == ":":
                    pos += 1
                    result[key] = value()
                    is_map = True
                else:
                    items.append(key)
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return result if is_map else items
        if token[0] in "'\"":
            return token[1:-1]
        if token in ("true", "false"):
            return token == "true"
        return int(token) if token.isdigit() else token

    return value()


def cluster_settings():
    """The submitter's k8s settings (cluster.config) and the task pods' securityContext: the k8s profile's
    `pod` directive (conf/k8s.config), which replaces k8s.securityContext (nf-k8s PodOptions.plus)."""
    text = (K8S / "base/cluster.config").read_text()
    match = re.search(r"^\s*securityContext\s*=\s*(\[.*?\])\s*$", text, re.M | re.S)
    settings = dict(re.findall(r"^\s*(\w+)\s*=\s*'([^']*)'", text, re.M))
    k8s_scope = groovy_literal(match.group(1))
    profile = (ROOT / "conf/k8s.config").read_text()
    directive = re.search(r"securityContext:\s*(\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\])", profile)
    return (groovy_literal(directive.group(1)) if directive else k8s_scope), k8s_scope, settings


def nextflow_task_pod():
    """The pod template of a task Job as Nextflow's k8s executor builds it (PodSpecBuilder.build: the
    k8s.securityContext on the pod spec, a container with name, image, command, workingDir, resources
    and the volume claims, no container securityContext unless privileged or Fusion's capabilities)."""
    security, _, settings = cluster_settings()
    return {
        "restartPolicy": "Never",
        "serviceAccountName": settings["serviceAccount"],
        "securityContext": security,
        "containers": [{
            "name": "nf-0123456789abcdef",
            "image": "registry.example.org/treesits/treesits-gdal-tools:0.1.0",
            "command": ["/bin/bash", "-ue", ".command.run"],
            "workingDir": settings["storageMountPath"] + "/nextflow-work/01/23456789abcdef",
            "resources": {"requests": {"cpu": 1, "memory": "2048Mi"}, "limits": {"memory": "2048Mi"}},
            "volumeMounts": [{"name": "vol-1", "mountPath": settings["storageMountPath"]},
                             {"name": "vol-2", "mountPath": "/cube", "readOnly": True}],
        }],
        "volumes": [{"name": "vol-1", "persistentVolumeClaim": {"claimName": settings["storageClaimName"]}},
                    {"name": "vol-2", "persistentVolumeClaim": {"claimName": CUBE_CLAIM}}],
    }


def task_policy():
    docs = [d for d in yaml.safe_load_all(TASK_POLICY.read_text()) if d]
    (policy,) = [d for d in docs if d["kind"] == "MutatingAdmissionPolicy"]
    (binding,) = [d for d in docs if d["kind"] == "MutatingAdmissionPolicyBinding"]
    return policy, binding


def apply_task_policy(pod):
    """What the policy's ApplyConfiguration does to a pod (server-side apply merge of the two fields into
    every container, by name); test_task_policy_sets_exactly_these_fields ties this to the file."""
    pod = copy.deepcopy(pod)
    for c in pod["containers"]:
        sc = c.setdefault("securityContext", {})
        sc["allowPrivilegeEscalation"] = False
        caps = sc.setdefault("capabilities", {})
        caps["drop"] = sorted(set(caps.get("drop") or []) | {"ALL"})
    return pod


def test_nextflow_alone_cannot_make_a_task_pod_restricted():
    # The pod-level half comes from cluster.config; the container-level half is what Nextflow cannot set.
    found = pod_security.violations(nextflow_task_pod(), "restricted")
    assert sorted(v.split(": ", 1)[1] for v in found) == [
        "allowPrivilegeEscalation must be false", "capabilities must drop ALL"], found
    assert pod_security.violations(nextflow_task_pod(), "baseline") == []


def test_task_pods_meet_restricted_with_the_cluster_policy():
    assert pod_security.violations(apply_task_policy(nextflow_task_pod()), "restricted") == []
    # Our own pods are unchanged by it (they already carry the fields).
    for target in TARGETS:
        for name, spec in pods(kustomize_lite.build(target)):
            assert apply_task_policy(spec)["containers"] == spec["containers"], name


def test_task_pods_get_the_pod_level_half():
    # Whichever Nextflow uses (the pod directive wins), the pod-level half of "restricted" is there.
    effective, k8s_scope, settings = cluster_settings()
    expected = {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"}}
    assert effective == expected and k8s_scope == expected
    assert settings["computeResourceType"] == "Job"


@pytest.mark.parametrize("version", ["1.36.0", "1.37.0"])
def test_task_policy_validates_strictly(version):
    for doc in yaml.safe_load_all(TASK_POLICY.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_task_policy_sets_exactly_these_fields():
    policy, binding = task_policy()
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule == {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    (mutation,) = spec["mutations"]
    assert mutation["patchType"] == "ApplyConfiguration"
    expression = re.sub(r"\s+", "", mutation["applyConfiguration"]["expression"])
    assert "containers:object.spec.containers.map(c,Object.spec.containers{name:c.name," in expression
    assert "allowPrivilegeEscalation:false" in expression
    assert 'capabilities:Object.spec.containers.securityContext.capabilities{drop:["ALL"]}' in expression
    # Only these two fields: nothing is loosened, no other container field is touched.
    # spec, containers, name, securityContext, allowPrivilegeEscalation, capabilities, drop
    assert len(re.findall(r"(\w+):", expression)) == 7, expression
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["matchResources"] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "treesits"}}}
    assert "namespace" not in policy["metadata"] and "namespace" not in binding["metadata"]
