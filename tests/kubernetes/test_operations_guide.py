"""docs/operations.md, end to end, without a cluster: every command of its ```sh blocks is either exercised
offline (what `kubectl apply` would send is rendered and validated strictly for Kubernetes 1.27, 1.30 and
1.37, the head Job's script runs in an emulated pod, `kubectl auth can-i` is answered from the rendered
Role, image names come from `containers/build --dry-run`, names and paths a command uses must exist in the
rendered objects) or is listed in NOT_OFFLINE with the reason it needs a real cluster, cloud or registry.
A command that is neither fails the test, so the guide cannot grow an unchecked step.

Run: .venv/bin/python -m pytest tests/kubernetes   (scripts/test does)
"""

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402
import pod_security  # noqa: E402
from test_continuous import EmulatedPod  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs/operations.md"
K8S = ROOT / "kubernetes"
NAMESPACE = "treesits"
VERSIONS = ["1.27.0", "1.30.0", "1.37.0"]
# Cluster-scoped objects that need a newer API than the namespace's manifests.
MIN_VERSIONS = {"MutatingAdmissionPolicy": "1.36.0", "MutatingAdmissionPolicyBinding": "1.36.0"}

# Commands that only a real cluster, cloud or registry can answer, by their first words.
NOT_OFFLINE = {
    "openstack": "OpenStack (EO-Lab/CloudFerro) API: creates the Magnum cluster, node group, kubeconfig, EC2 keys",
    "export": "shell state (the kubeconfig written by `openstack coe cluster config`)",
    "helm": "installs csi-driver-nfs from its chart repository into a running cluster",
    "docker push": "a container registry (none reachable here); the tags are checked against the build",
    "kubectl version": "asks the API server",
    "kubectl get": "asks the API server (a storage class it names must be the one kubernetes/cluster/ defines)",
    "kubectl api-resources": "asks the API server",
    "kubectl describe": "asks the API server",
    "s3cmd": "an S3 endpoint (the bucket path and host are checked against the overlay's params)",
    "aws": "an S3 endpoint (the bucket path and endpoint are checked against the overlay's params)",
}


# ---------------------------------------------------------------- reading the guide


def guide_commands():
    """argv of every command in the guide's ```sh blocks: `\\` continuations joined, comments dropped, a
    quoted argument may span lines."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", GUIDE.read_text(), re.M | re.S):
        buf = ""
        for line in block.replace("\\\n", " ").splitlines():
            buf = f"{buf}\n{line}" if buf else line
            try:
                argv = shlex.split(buf, comments=True)
            except ValueError:  # an open quote: the command goes on on the next line
                continue
            buf = ""
            if argv:
                commands.append(argv)
        assert not buf, f"unterminated command in the guide: {buf[:80]}"
    return commands


def text_block_after(marker):
    """The plain ``` block that follows a line containing marker (the guide's example files)."""
    text = GUIDE.read_text()
    match = re.search(re.escape(marker) + r".*?\n```\n(.*?)```", text, re.S)
    assert match, marker
    return match.group(1)


# ---------------------------------------------------------------- what the commands act on


class Cluster:
    """The rendered targets and cluster files, and what the guide's commands did to them so far."""

    def __init__(self):
        self.targets = {}
        self.built = set()
        self.checked = []

    def render(self, directory):
        key = str(Path(directory))
        if key not in self.targets:
            self.targets[key] = kustomize_lite.build(ROOT / directory)
        return self.targets[key]

    def overlays(self):
        return [self.render(p.relative_to(ROOT)) for p in sorted((K8S / "overlays").glob("*/kustomization.yaml"))
                for p in [p.parent]]

    def find(self, kind, name, objects=None):
        pools = [objects] if objects is not None else self.overlays()
        return [o for pool in pools for o in pool if o["kind"] == kind and o["metadata"]["name"] == name]


def validate(obj, versions=VERSIONS):
    minimum = MIN_VERSIONS.get(obj["kind"])
    for version in versions if not minimum else [minimum, VERSIONS[-1]]:
        kubernetes_validate.validate(obj, version, strict=True)


def option(argv, name):
    for i, a in enumerate(argv):
        if a == name:
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.partition("=")[2]
    return None


def check_namespace(argv):
    assert option(argv, "-n") in (None, NAMESPACE), argv


def check_apply(argv, cluster):
    check_namespace(argv)
    if "-k" in argv:
        directory = option(argv, "-k")
        assert directory.startswith("kubernetes/overlays/"), f"apply an overlay, not {directory}"
        objects = cluster.render(directory)
        assert len(objects) >= 10
        for obj in objects:
            validate(obj)
            if obj["kind"] not in kustomize_lite.CLUSTER_SCOPED:
                assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        return f"rendered and validated {directory}"
    path = ROOT / option(argv, "-f")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, path
    for doc in docs:
        validate(doc)
    if path.name == "namespace.yaml":
        (rendered,) = cluster.find("Namespace", NAMESPACE, cluster.render("kubernetes/base"))
        assert docs[0]["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()
    if path.name == "nfs-csi-storageclass.yaml":
        (sc,) = docs
        (eolab_work,) = cluster.find("PersistentVolumeClaim", "treesits-work", cluster.render("kubernetes/overlays/eolab"))
        assert eolab_work["spec"]["storageClassName"] == sc["metadata"]["name"]
        assert sc["provisioner"] == "nfs.csi.k8s.io" and sc["parameters"]["mountPermissions"]
    return f"validated {path.relative_to(ROOT)}"


def check_create_secret(argv, cluster):
    check_namespace(argv)
    assert argv[3:6] == ["create", "secret", "generic"], argv
    name = argv[6]
    keys = set(re.findall(r"^(\w+)=", text_block_after("`s3.env`"), re.M))
    assert option(argv, "--from-env-file") == "s3.env"
    referenced = set()
    for objects in cluster.overlays():
        for o in objects:
            for spec in kustomize_lite.pod_specs(o):
                for c in kustomize_lite.containers(spec):
                    for e in c.get("env") or []:
                        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                        if ref:
                            assert ref["name"] == name, ref
                            referenced.add(ref["key"])
    assert referenced and keys == referenced, (keys, referenced)
    return f"secret {name} has exactly the keys the pods read: {sorted(keys)}"


def resource_ref(ref):
    kind, _, name = ref.partition("/")
    kind = {"job": "Job", "cronjob": "CronJob", "pod": "Pod", "jobs": "Job"}[kind]
    return kind, name


def check_logs(argv, cluster):
    check_namespace(argv)
    ref = next(a for a in argv[3:] if "/" in a)
    kind, name = resource_ref(ref)
    container = option(argv, "-c")
    if name == "<job>":  # a Job of the CronJob
        (cron,) = cluster.find("CronJob", "treesits-continuous", cluster.render("kubernetes/overlays/continuous"))
        spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        found = cluster.find(kind, name)
        assert found, ref
        spec = next(kustomize_lite.pod_specs(found[0]))
    names = [c["name"] for c in kustomize_lite.containers(spec)]
    assert container in names if container else len(spec["containers"]) == 1, (container, names)
    return f"{ref} exists" + (f" with container {container}" if container else "")


def check_delete(argv, cluster):
    check_namespace(argv)
    kind, name = {"job": "Job", "pod": "Pod", "cronjob": "CronJob"}[argv[4]], argv[5]
    assert cluster.find(kind, name), argv
    return f"{kind} {name} exists"


def check_auth_can_i(argv, cluster):
    verb, resource = argv[3], argv[4]
    namespace = option(argv, "-n")
    account = option(argv, "--as")
    assert account.startswith(f"system:serviceaccount:{namespace}:")
    resource, _, group = resource.partition(".")
    for objects in cluster.overlays():
        (role,) = [o for o in objects if o["kind"] == "Role"]
        (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
        assert {"kind": "ServiceAccount", "name": account.rpartition(":")[2], "namespace": namespace} in binding["subjects"]
        answer = any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in role["rules"])
        expected = EXPECTED_CAN_I[(verb, argv[4])]
        assert answer is expected, (argv[3:5], answer)
    return f"can-i {verb} {argv[4]}: {'yes' if expected else 'no'}"


# What the guide says the answers are ("yes, then no").
EXPECTED_CAN_I = {("create", "jobs.batch"): True, ("create", "pods/exec"): False}


def check_cp(argv, cluster):
    check_namespace(argv)
    src, dst = argv[4], argv[5]
    (remote,) = [x for x in (src, dst) if ":" in x]
    pod_name, _, path = remote.partition(":")
    (pod,) = cluster.find("Pod", pod_name, cluster.render("kubernetes/overlays/eolab"))
    (container,) = pod["spec"]["containers"]
    mounts = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{path} is on no volume of {pod_name} (its root file system is read-only)"
    if remote == dst:
        assert not mounts[0].get("readOnly"), f"{path}: read-only in {pod_name}"
    if path.endswith(".nextflow.log"):
        (cm,) = [o for o in cluster.render("kubernetes/overlays/eolab") if o["kind"] == "ConfigMap"]
        assert path == cm["data"]["NXF_LAUNCH_DIR"] + "/.nextflow.log"
    return f"{path} is on {pod_name}'s volume {mounts[0]['name']}"


def check_exec(argv, cluster):
    check_namespace(argv)
    pod_name = argv[argv.index("exec") + 1 + (1 if argv[argv.index("exec") + 1].startswith("-") else 0)]
    (pod,) = cluster.find("Pod", pod_name, cluster.render("kubernetes/overlays/eolab"))
    image = pod["spec"]["containers"][0]["image"]
    dockerfile = ROOT / "containers" / image.rpartition("/")[2].partition(":")[0].removeprefix("treesits-") / "Dockerfile"
    assert re.search(r"apt-get install .*\bbash\b", dockerfile.read_text()), dockerfile
    assert argv[-1] == "bash"
    return f"{pod_name} runs {image}, which has bash"


def check_create_job_from_cronjob(argv, cluster):
    check_namespace(argv)
    kind, name = resource_ref(option(argv, "--from"))
    (cron,) = cluster.find(kind, name, cluster.render("kubernetes/overlays/continuous"))
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": argv[-1], "namespace": NAMESPACE},
           "spec": copy.deepcopy(cron["spec"]["jobTemplate"]["spec"])}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", argv[-1])
    validate(job)
    return f"Job {argv[-1]} from {name} validates"


def check_patch(argv, cluster):
    check_namespace(argv)
    kind, name = {"cronjob": "CronJob"}[argv[4]], argv[5]
    patch = json.loads(option(argv, "-p"))
    for overlay in ("continuous", "eolab-continuous"):
        (obj,) = cluster.find(kind, name, cluster.render(f"kubernetes/overlays/{overlay}"))
        patched = merge_patch(copy.deepcopy(obj), patch)
        validate(patched)
        assert patched["spec"]["suspend"] is patch["spec"]["suspend"]
    return f"merge patch {patch} on {kind} {name} validates"


def merge_patch(target, patch):
    """RFC 7386, what `kubectl patch` does to a CRD-less object with a JSON patch of maps."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value
    return target


def check_run_pod(argv, cluster):
    check_namespace(argv)
    name, image = argv[argv.index("run") + 1], option(argv, "--image")
    overrides = json.loads(option(argv, "--overrides"))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE},
           "spec": {"restartPolicy": option(argv, "--restart"), "containers": [{"name": name, "image": image}]}}
    pod = merge_patch(pod, overrides)
    validate(pod)
    assert pod_security.violations(pod["spec"], "restricted") == [], "the namespace would refuse it"
    assert image in cluster.built, f"{image} is not an image the guide builds"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == image and container["resources"]["limits"]["nvidia.com/gpu"] == 1
    params = yaml.safe_load(next(o for o in cluster.render("kubernetes/overlays/eolab")
                                 if o["kind"] == "ConfigMap")["data"]["params.yaml"])
    assert [t["key"] for t in pod["spec"]["tolerations"]] == [params["gpu_toleration_key"]]
    return f"pod {name} validates and meets restricted"


def check_build(argv, cluster):
    env = dict(a.split("=", 1) for a in argv if re.match(r"^[A-Z_]+=", a))
    command = [a for a in argv if a not in [f"{k}={v}" for k, v in env.items()]]
    assert command == ["containers/build"], command
    run = subprocess.run([str(ROOT / "containers/build"), "--dry-run"], capture_output=True, text=True, check=True,
                         cwd=ROOT, env=dict(os.environ, **env))
    tags = re.findall(r" -t (\S+)", run.stdout)
    assert len(tags) == 4
    cluster.built |= set(tags)
    # The overlays run exactly these images.
    for objects in cluster.overlays():
        for o in objects:
            for spec in kustomize_lite.pod_specs(o):
                for c in kustomize_lite.containers(spec):
                    assert c["image"] in cluster.built, c["image"]
    return f"containers/build --dry-run tags {sorted(tags)}"


def check_not_offline(argv, cluster, key):
    text = " ".join(argv)
    if key == "docker push":
        assert argv[2] in cluster.built, f"pushes {argv[2]}, which the guide did not build"
    if key in ("s3cmd", "aws"):
        paths = [a for a in argv if a.startswith("s3://")]
        params = [yaml.safe_load(o["data"]["params.yaml"]) for objects in cluster.overlays()
                  for o in objects if o["kind"] == "ConfigMap"]
        outdirs = {p["outdir"].rstrip("/") for p in params}
        assert paths and all(any(p.rstrip("/").startswith(o) for o in outdirs) for p in paths), (paths, outdirs)
        endpoints = {p["s3_endpoint"] for p in params if p["s3_endpoint"]}
        host = option(argv, "--host") or option(argv, "--endpoint-url")
        if host:
            assert any(host.removeprefix("https://") == e.removeprefix("https://") for e in endpoints), host
    if key == "helm" and argv[1] == "install":
        assert argv[2] == "csi-driver-nfs" and option(argv, "--namespace") == "kube-system"
    if key == "kubectl get" and "storageclass" in argv and len(argv) > 3:
        assert argv[3] == yaml.safe_load((K8S / "cluster/nfs-csi-storageclass.yaml").read_text())["metadata"]["name"]
    if key == "export":
        assert text.startswith("export KUBECONFIG=")
    return f"not runnable offline: {NOT_OFFLINE[key]}"


HANDLERS = [
    (lambda a: a[:2] == ["kubectl", "apply"], check_apply),
    (lambda a: a[:1] == ["kubectl"] and a[3:5] == ["create", "secret"], check_create_secret),
    (lambda a: a[:1] == ["kubectl"] and a[3:4] == ["logs"], check_logs),
    (lambda a: a[:1] == ["kubectl"] and a[3:4] == ["delete"], check_delete),
    (lambda a: a[:3] == ["kubectl", "auth", "can-i"], check_auth_can_i),
    (lambda a: a[:1] == ["kubectl"] and a[3:4] == ["cp"], check_cp),
    (lambda a: a[:1] == ["kubectl"] and a[3:4] == ["exec"], check_exec),
    (lambda a: a[:1] == ["kubectl"] and a[3:5] == ["create", "job"], check_create_job_from_cronjob),
    (lambda a: a[:1] == ["kubectl"] and a[3:4] == ["patch"], check_patch),
    (lambda a: a[:1] == ["kubectl"] and a[3:4] == ["run"], check_run_pod),
    (lambda a: "containers/build" in a, check_build),
]


def classify(argv):
    """The checks for one command: its handler, or its NOT_OFFLINE key. Fails for an unknown command."""
    handlers = [check for match, check in HANDLERS if match(argv)]
    plain = [a for a in argv if a not in ("-n", NAMESPACE)]
    keys = [k for k in NOT_OFFLINE if plain[:len(k.split())] == k.split()]
    assert len(handlers) + len(keys) == 1, f"the guide's command {' '.join(argv)!r}: no check and not listed " \
        "as not runnable offline (add it to tests/kubernetes/test_operations_guide.py)"
    return (lambda a, c: handlers[0](a, c)) if handlers else (lambda a, c: check_not_offline(a, c, keys[0]))


def test_every_command_of_the_guide_is_checked_or_listed():
    cluster = Cluster()
    results = []
    for argv in guide_commands():
        results.append((argv, classify(argv)(argv, cluster)))
    text = "\n".join(f"{' '.join(a)[:60]} -> {r}" for a, r in results)
    # The path from an empty cluster to the map is all there: cluster setup on both kinds of cluster,
    # images, namespace, credentials, both overlays, the run's log, the download.
    for needed in ["openstack coe cluster create", "kubectl apply -f kubernetes/cluster/nfs-csi-storageclass.yaml",
                   "kubectl apply -f kubernetes/cluster/task-pod-security.yaml", "containers/build",
                   "kubectl apply -f kubernetes/base/namespace.yaml", "create secret generic treesits-s3",
                   "kubectl apply -k kubernetes/overlays/eolab", "kubectl apply -k kubernetes/overlays/generic",
                   "kubectl apply -k kubernetes/overlays/continuous", "logs -f job/treesits-run", "s3cmd sync"]:
        assert any(needed in " ".join(a) for a, _ in results), f"the guide lost the step {needed!r}\n{text}"
    offline = [r for _, r in results if not r.startswith("not runnable")]
    assert len(offline) >= 15, text


def test_guide_steps_come_in_a_working_order():
    # The namespace before the Secret in it, the Secret before the pods that read it, the images before
    # they are pushed; the cluster policy and storage class before the overlay that needs them.
    order = [" ".join(a) for a in guide_commands()]

    def first(piece):
        return next(i for i, c in enumerate(order) if piece in c)

    assert first("apply -f kubernetes/base/namespace.yaml") < first("create secret") < first("apply -k kubernetes/overlays/eolab")
    assert first("containers/build") < first("docker push") < first("apply -k")
    assert first("nfs-csi-storageclass.yaml") < first("apply -k kubernetes/overlays/eolab")
    assert first("task-pod-security.yaml") < first("apply -k kubernetes/overlays/generic")


def test_the_checks_catch_a_wrong_command():
    cluster = Cluster()
    check_build(["REGISTRY=registry.example.org/treesits", "containers/build"], cluster)
    with pytest.raises(AssertionError):
        check_delete(["kubectl", "-n", "treesits", "delete", "job", "treesits-runn"], cluster)
    with pytest.raises(AssertionError):
        check_cp(["kubectl", "-n", "treesits", "cp", "x", "treesits-staging:/cube/x"], cluster)  # read-only
    with pytest.raises(AssertionError):
        check_cp(["kubectl", "-n", "treesits", "cp", "x", "treesits-staging:/etc/x"], cluster)  # no volume
    with pytest.raises(AssertionError):
        check_not_offline(["docker", "push", "registry.example.org/other/treesits-submitter:0.1.0"], cluster, "docker push")
    with pytest.raises(AssertionError):
        classify(["kubectl", "-n", "treesits", "scale", "job", "treesits-run"])
    bad_gpu = ["kubectl", "-n", "treesits", "run", "g", "--restart=Never",
               "--image=registry.example.org/treesits/treesits-predict-cuda:0.1.0",
               '--overrides={"spec":{"containers":[{"name":"g","image":"x"}]}}']
    with pytest.raises(AssertionError):
        check_run_pod(bad_gpu, cluster)


@pytest.mark.parametrize("overlay", ["eolab", "generic"])
def test_the_head_jobs_script_runs_the_pipeline_in_an_emulated_pod(overlay, tmp_path):
    # `kubectl apply -k` starts the Job treesits-run: its container's script, run with bash in a pod emulated
    # as in test_continuous.py (a directory per volume, a stub nextflow recording its arguments).
    objects = kustomize_lite.build(K8S / "overlays" / overlay)
    (job,) = [o for o in objects if o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    emulated = EmulatedPod(objects, pod, tmp_path, check_status=0)
    (container,) = pod["containers"]
    result = emulated.run(container)
    assert result.returncode == 0, result.stderr
    assert "N E X T F L O W" in result.stdout
    (call,) = emulated.calls("nextflow")
    argv = call["argv"]
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    data = cm["data"]
    assert argv[:2] == ["run", "/pipeline/main.nf"] and "-resume" in argv and "--incremental" not in argv
    assert argv[argv.index("-profile") + 1] == data["NXF_PROFILES"]
    assert yaml.safe_load(Path(argv[argv.index("-params-file") + 1]).read_text()) == yaml.safe_load(data["params.yaml"])
    assert Path(argv[argv.index("-c") + 1]).read_text() == emulated.rewrite(data["cluster.config"], container)
    assert Path(call["cwd"]) == emulated.host_path(container, data["NXF_LAUNCH_DIR"])
    assert Path(argv[argv.index("-work-dir") + 1]) == emulated.host_path(container, data["NXF_WORK"])
    (work,) = [v for v in pod["volumes"] if (v.get("persistentVolumeClaim") or {}).get("claimName") == "treesits-work"]
    assert Path(call["cwd"]).is_relative_to(emulated.volume_dir(work, container))
    assert call["env"]["AWS_ACCESS_KEY_ID"] == "from-secret-AWS_ACCESS_KEY_ID"
    assert "-Duser.home=/tmp" in [e["value"] for e in container["env"] if e["name"] == "NXF_OPTS"][0]
