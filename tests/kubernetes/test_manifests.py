"""kubernetes/: every manifest and every overlay's rendering validates offline (strict, Kubernetes schemas
bundled with kubernetes-validate), the Role grants exactly what Nextflow's k8s executor needs, pods are
unprivileged and non-root, and the names the pipeline's params refer to exist.

Run: .venv/bin/python -m pytest tests/kubernetes   (scripts/test does)
"""

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402

from k8s_tree import K8S, OVERLAYS, ROOT, TARGET_IDS, TARGETS  # noqa: E402
# Oldest release we support (EO-Lab's Magnum templates lag), a middle one, the newest bundled schema.
K8S_VERSIONS = ["1.27.0", "1.30.0", "1.37.0"]
NAMESPACE = "treesits"

# What Nextflow's k8s executor calls with k8s.computeResourceType = 'Job', and nothing more (its K8sClient
# requests, by API path): POST/GET/DELETE .../jobs[/{name}], GET .../jobs/{name}/status (when a task's
# pod is gone), GET .../pods?labelSelector=job-name=... (list), GET .../pods/{name}/status and
# .../pods/{name}/log, DELETE .../pods/{name} (a Job's pods). The Job controller creates the pods, so no
# pod create; no watch (Nextflow polls); no pods/exec (only `kuberun login` uses it). Jobs: batch group.
NEXTFLOW_CALLS = [
    ("POST", "/apis/batch/v1/namespaces/treesits/jobs"),
    ("DELETE", "/apis/batch/v1/namespaces/treesits/jobs/nf-1234"),
    ("GET", "/apis/batch/v1/namespaces/treesits/jobs/nf-1234/status"),
    ("GET", "/api/v1/namespaces/treesits/pods?labelSelector=job-name=nf-1234"),
    ("GET", "/api/v1/namespaces/treesits/pods/nf-1234-x7k2q/status"),
    ("GET", "/api/v1/namespaces/treesits/pods/nf-1234-x7k2q/log"),
    ("DELETE", "/api/v1/namespaces/treesits/pods/nf-1234-x7k2q"),
]
NEXTFLOW_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
    {"apiGroups": [""], "resources": ["pods/status", "pods/log"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
]


def render(target):
    return kustomize_lite.build(target)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind, name=None):
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def head_job(objects):
    """The spec of the Job that runs Nextflow: the one-shot Job, or the job template of the CronJob of
    continuous mode (components/continuous replaces the one with the other)."""
    jobs, cronjobs = by_kind(objects, "Job"), by_kind(objects, "CronJob")
    assert len(jobs) + len(cronjobs) == 1, f"expected one head Job or CronJob, found {len(jobs)} + {len(cronjobs)}"
    return jobs[0]["spec"] if jobs else cronjobs[0]["spec"]["jobTemplate"]["spec"]


def head_name(objects):
    (obj,) = by_kind(objects, "Job") + by_kind(objects, "CronJob")
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_specs(objects):
    for o in objects:
        for spec in kustomize_lite.pod_specs(o):
            yield f"{o['kind']}/{o['metadata']['name']}", spec


def canonical(objects):
    return sorted((json.dumps(o, sort_keys=True) for o in objects))


# ---------------------------------------------------------------- schema validation


def manifest_files():
    return sorted(p for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_file_validates_strictly(path, version):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    if path.name == "params.yaml":  # pipeline parameters, not a Kubernetes object
        assert "apiVersion" not in docs[0]
        return
    assert docs, f"{path}: empty"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_rendered_output_validates_strictly(target, version):
    objects = render(target)
    assert len(objects) >= 10
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_rejects_an_unknown_field():
    job = copy.deepcopy(one(render(K8S / "overlays/generic"), "Job"))
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSIONS[0], strict=True)


# ---------------------------------------------------------------- the renderer agrees with kustomize


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: kustomize_lite alone renders")
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_renderer_matches_kubectl_kustomize(target):
    out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True, check=True).stdout
    expected = [d for d in yaml.safe_load_all(out) if d]
    assert canonical(render(target)) == canonical(expected)


def test_renderer_configmap_hash_is_kustomizes(tmp_path):
    # x-4h2mbtbbt6 is what `kubectl kustomize` (kustomize v5.5.0) names this generator's ConfigMap.
    (tmp_path / "kustomization.yaml").write_text("configMapGenerator:\n- name: x\n  literals: [a=b]\n")
    (cm,) = render(tmp_path)
    assert cm["metadata"]["name"] == "x-4h2mbtbbt6"
    assert cm["data"] == {"a": "b"}


def test_renderer_merges_generators_and_updates_references(tmp_path):
    base, overlay = tmp_path / "base", tmp_path / "overlay"
    base.mkdir()
    overlay.mkdir()
    (base / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        "  - {name: c, image: app, envFrom: [{configMapRef: {name: cfg}}]}\n"
        "  volumes: [{name: v, configMap: {name: cfg}}]\n"
    )
    (base / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [pod.yaml]\nconfigMapGenerator:\n- name: cfg\n  literals: [a=1, b=2]\n"
    )
    (overlay / "kustomization.yaml").write_text(
        "resources: [../base]\nconfigMapGenerator:\n- name: cfg\n  behavior: merge\n  literals: [b=3]\n"
        "images:\n- {name: app, newName: registry.example.org/app, newTag: '1.0'}\n"
        "patches:\n- target: {kind: Pod, name: p}\n  patch: |-\n    - {op: add, path: /spec/priority, value: 5}\n"
    )
    objects = render(overlay)
    cm, pod = one(objects, "ConfigMap"), one(objects, "Pod")
    assert cm["data"] == {"a": "1", "b": "3"}
    assert cm["metadata"]["namespace"] == "ns" and cm["metadata"]["name"].startswith("cfg-")
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    assert pod["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]
    assert pod["spec"]["containers"][0]["image"] == "registry.example.org/app:1.0"
    assert pod["spec"]["priority"] == 5


def write_component_example(tmp_path):
    """A base with a Job and a generated ConfigMap, and an overlay whose component deletes the Job, adds a
    CronJob that refers to the ConfigMap, and merges keys into it; the overlay merges one of them too."""
    base, component, overlay = tmp_path / "base", tmp_path / "component", tmp_path / "overlay"
    for d in (base, component, overlay):
        d.mkdir()
    pod = {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "c", "image": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}
    (base / "job.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"}, "spec": {"template": pod}}))
    (base / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [job.yaml]\nconfigMapGenerator:\n- name: cfg\n  literals: [a=1, b=2]\n"
    )
    (component / "cronjob.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "often"},
         "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": pod}}}}))
    (component / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nnamespace: ns\n"
        "labels:\n- pairs: {team: maps}\n  includeTemplates: true\nresources: [cronjob.yaml]\n"
        "configMapGenerator:\n- name: cfg\n  behavior: merge\n  literals: [b=3, c=4]\n"
        "patches:\n- target: {kind: Job, name: once}\n  patch: |-\n    $patch: delete\n"
        "    apiVersion: batch/v1\n    kind: Job\n    metadata: {name: once}\n"
    )
    (overlay / "kustomization.yaml").write_text(
        "resources: [../base]\ncomponents: [../component]\n"
        "configMapGenerator:\n- name: cfg\n  behavior: merge\n  literals: [c=5]\n"
        "images:\n- {name: app, newName: registry.example.org/app, newTag: '1.0'}\n"
    )
    return overlay


def test_renderer_applies_components_after_resources(tmp_path):
    objects = render(write_component_example(tmp_path))
    assert not by_kind(objects, "Job")
    cm, cron = one(objects, "ConfigMap"), one(objects, "CronJob")
    # kustomize runs a kustomization's generators before its components: base, overlay, component.
    assert cm["data"] == {"a": "1", "b": "3", "c": "4"}
    assert cron["metadata"]["namespace"] == "ns"
    assert cron["metadata"]["labels"] == {"team": "maps"}
    assert cron["spec"]["jobTemplate"]["metadata"]["labels"] == {"team": "maps"}
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["metadata"]["labels"] == {"team": "maps"}
    assert pod["spec"]["containers"][0]["image"] == "registry.example.org/app:1.0"
    assert pod["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]
    assert cm["metadata"]["name"].startswith("cfg-")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: kustomize_lite alone renders")
def test_renderer_components_match_kubectl_kustomize(tmp_path):
    overlay = write_component_example(tmp_path)
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
    assert canonical(render(overlay)) == canonical([d for d in yaml.safe_load_all(out) if d])


def test_renderer_refuses_components_and_patches_it_does_not_implement(tmp_path):
    overlay = write_component_example(tmp_path)
    component = tmp_path / "component" / "kustomization.yaml"
    text = component.read_text()
    # A component listed under resources, or a kustomization under components: kustomize refuses both.
    (overlay / "kustomization.yaml").write_text("resources: [../base, ../component]\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="kind 'Component' where a Kustomization"):
        render(overlay)
    (overlay / "kustomization.yaml").write_text("components: [../base]\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="kind 'Kustomization' where a Component"):
        render(overlay)
    (overlay / "kustomization.yaml").write_text("resources: [../base]\ncomponents: [../component]\n")
    # Strategic merge patches other than a whole-object delete are not implemented.
    component.write_text(text.replace("$patch: delete", "spec: {backoffLimit: 1}"))
    with pytest.raises(kustomize_lite.KustomizeError, match="only `\\$patch: delete`"):
        render(overlay)
    component.write_text(text.replace("target: {kind: Job, name: once}", "target: {kind: Job, name: twice}"))
    with pytest.raises(kustomize_lite.KustomizeError, match="matches nothing"):
        render(overlay)


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("helmCharts: []\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="helmCharts"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches:\n- target: {kind: Pod}\n  patch: '[]'\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="matches nothing"):
        render(tmp_path)


# ---------------------------------------------------------------- RBAC


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_role_grants_exactly_what_nextflow_needs(target):
    objects = render(target)
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == NEXTFLOW_RULES
    # Jobs must be granted under batch; a "jobs" rule in the core group grants nothing.
    for rule in role["rules"]:
        if "jobs" in rule["resources"]:
            assert rule["apiGroups"] == ["batch"]
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")


def rbac_request(method, path):
    """(apiGroup, resource[/subresource], verb) of a namespaced API request, as the RBAC authorizer sees it."""
    path, _, query = path.partition("?")
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}.get(method)
    if verb is None:
        verb = "get" if named else ("watch" if "watch=" in query else "list")
    return group, resource, verb


def allowed(rules, group, resource, verb):
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_role_allows_every_call_nextflow_makes_and_nothing_it_does_not():
    needed = {rbac_request(m, p) for m, p in NEXTFLOW_CALLS}
    for request in needed:
        assert allowed(NEXTFLOW_RULES, *request), request
    granted = {(g, res, v) for r in NEXTFLOW_RULES for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    # Beyond the calls: only reads of the objects themselves (get/list of pods and Jobs), which other
    # Nextflow versions make and which reveal nothing the account did not create.
    extra = granted - needed
    assert extra <= {("", "pods", "get"), ("batch", "jobs", "get"), ("batch", "jobs", "list")}, sorted(extra)
    for request in [("", "pods", "create"), ("", "pods/exec", "create"), ("", "pods/exec", "get"),
                    ("", "secrets", "get"), ("", "configmaps", "create"), ("", "jobs", "create")]:
        assert not allowed(NEXTFLOW_RULES, *request), request


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_rolebinding_ties_the_submitter_account_to_the_role(target):
    objects = render(target)
    binding, account, job = one(objects, "RoleBinding"), one(objects, "ServiceAccount"), head_job(objects)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": one(objects, "Role")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert job["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


# ---------------------------------------------------------------- pod security


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_pods_are_unprivileged_non_root_and_have_requests(target):
    objects = render(target)
    specs = list(pod_specs(objects))
    assert {name for name, _ in specs} == {head_name(objects), "Pod/treesits-staging"}
    assert head_name(objects) in ("Job/treesits-run", "CronJob/treesits-continuous")
    for name, spec in specs:
        sc = spec.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, name
        assert sc.get("runAsUser", 0) != 0, name
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{name}: {key}"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for c in kustomize_lite.containers(spec):
            csc = c.get("securityContext", {})
            assert csc.get("privileged") is not True, name
            assert csc.get("allowPrivilegeEscalation") is False, name
            assert csc.get("capabilities") == {"drop": ["ALL"]}, name
            requests = c.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), f"{name}/{c['name']}: requests {requests}"
            assert "memory" in c["resources"].get("limits", {}), f"{name}/{c['name']}: no memory limit"


# (the namespace's Pod Security levels: tests/kubernetes/test_pod_security.py)


# ---------------------------------------------------------------- network


def s3_port(endpoint):
    if not endpoint:
        return 443  # AWS S3
    scheme, _, rest = endpoint.partition("://")
    host = rest.split("/")[0]
    return int(host.rpartition(":")[2]) if ":" in host else {"https": 443, "http": 80}[scheme]


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_network_policy_denies_ingress_and_allows_only_the_pipelines_egress(target):
    objects = render(target)
    policy = one(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"] == {}, "every pod of the namespace"
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    (egress,) = spec["egress"]
    assert set(egress) == {"ports"}, "by port only: S3 and the API server have no fixed address"
    ports = {(p["protocol"], p["port"]) for p in egress["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)} <= ports  # DNS, API server
    params = yaml.safe_load(one(objects, "ConfigMap")["data"]["params.yaml"])
    assert ("TCP", s3_port(params["s3_endpoint"])) in ports, params["s3_endpoint"]
    assert all(port in (53, 80, 443, 6443, 8080) for _, port in ports), ports


def test_s3_port_reads_endpoints():
    assert s3_port("") == 443 and s3_port("https://cloud.fra1-1.cloudferro.com:8080") == 8080
    assert s3_port("http://minio.local/") == 80 and s3_port("https://s3.example.org") == 443


# ---------------------------------------------------------------- the submitter Job


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_head_job_never_retries_and_runs_the_bundled_pipeline(target):
    objects = render(target)
    spec = head_job(objects)
    assert spec["backoffLimit"] == 0
    if by_kind(objects, "Job"):  # a CronJob's history limits remove its finished Jobs instead
        assert spec["ttlSecondsAfterFinished"] > 0
    template = spec["template"]
    assert template["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert template["spec"]["restartPolicy"] == "Never"
    (container,) = template["spec"]["containers"]
    script = " ".join(container["command"] + container["args"])
    for piece in ("nextflow run /pipeline/main.nf", "-params-file /config/params.yaml",
                  "-c /config/cluster.config", '-profile "$NXF_PROFILES"'):
        assert piece in script

    cm = one(objects, "ConfigMap")
    config_volume = next(v for v in template["spec"]["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    assert {"params.yaml", "cluster.config", "NXF_PROFILES", "NXF_LAUNCH_DIR", "NXF_WORK"} <= set(cm["data"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/config"
    assert "k8s" in cm["data"]["NXF_PROFILES"].split(",")
    work_mount = next(m for m in container["volumeMounts"] if m["name"] == "work")["mountPath"]
    assert cm["data"]["NXF_WORK"].startswith(work_mount + "/")
    assert cm["data"]["NXF_LAUNCH_DIR"].startswith(work_mount + "/")


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_s3_credentials_are_secret_references_only(target):
    objects = render(target)
    assert not by_kind(objects, "Secret")
    pod = head_job(objects)["template"]["spec"]
    for c in kustomize_lite.containers(pod):
        aws = {e["name"]: e for e in c.get("env") or [] if e["name"].startswith("AWS_")}
        if c in pod["containers"]:  # Nextflow needs them; an init container may
            assert set(aws) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, c["name"]
        assert set(aws) <= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, c["name"]
        for e in aws.values():
            assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == "treesits-s3"
            assert e["valueFrom"]["secretKeyRef"]["key"] == e["name"]


def test_no_credentials_anywhere_in_the_repository_manifests():
    # A <placeholder> (the guide's example s3.env) is not a credential.
    pattern = re.compile(r"(aws_secret_access_key|secret_key|password)\s*[:=]\s*(?!<[\w-]+>\s)\S{8,}", re.I)
    for path in list(K8S.rglob("*")) + [ROOT / "docs/operations.md"]:
        if path.is_file():
            assert not pattern.search(path.read_text()), f"{path}: looks like a credential"


# ---------------------------------------------------------------- volumes and the pipeline's params


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_volumes_are_shared_by_all_nodes(target):
    # Many nodes at once: the cube read-only (ReadOnlyMany), the work volume read-write (ReadWriteMany).
    objects = render(target)
    cube_pv = one(objects, "PersistentVolume", "treesits-cube")
    assert cube_pv["spec"]["accessModes"] == ["ReadOnlyMany"] and "nfs" in cube_pv["spec"]
    assert cube_pv["spec"]["claimRef"] == {"namespace": NAMESPACE, "name": "treesits-cube"}
    access = {c["metadata"]["name"]: c["spec"]["accessModes"] for c in by_kind(objects, "PersistentVolumeClaim")}
    assert access == {"treesits-cube": ["ReadOnlyMany"], "treesits-work": ["ReadWriteMany"]}
    cube_pvc = one(objects, "PersistentVolumeClaim", "treesits-cube")
    assert cube_pvc["spec"]["volumeName"] == "treesits-cube" and cube_pvc["spec"]["storageClassName"] == ""


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_params_and_cluster_config_name_the_objects_that_exist(target):
    objects = render(target)
    data = one(objects, "ConfigMap")["data"]
    params = yaml.safe_load(data["params.yaml"])
    claims = {c["metadata"]["name"] for c in by_kind(objects, "PersistentVolumeClaim")}
    assert params["k8s_namespace"] == NAMESPACE
    assert params["k8s_service_account"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert params["k8s_pvc"] in claims
    assert params["cube"] == params["k8s_pvc_mount"]
    config = data["cluster.config"]
    settings = dict(re.findall(r"^\s*(\w+)\s*=\s*'([^']*)'", config, re.M))
    assert settings["namespace"] == NAMESPACE
    assert settings["serviceAccount"] == params["k8s_service_account"]
    assert settings["computeResourceType"] == "Job"
    assert settings["storageClaimName"] in claims and settings["storageClaimName"] != params["k8s_pvc"]
    assert data["NXF_WORK"].startswith(settings["storageMountPath"] + "/")


def test_overlays_images_are_fully_qualified_and_tagged():
    for overlay in OVERLAYS:
        for name, spec in pod_specs(render(overlay)):
            for c in kustomize_lite.containers(spec):
                image = c["image"]
                assert "." in image.split("/")[0], f"{overlay.name} {name}: {image} not fully qualified"
                assert re.search(r":[\w.-]+$", image), f"{overlay.name} {name}: {image} has no tag"


def test_eolab_overlay_targets_cloudferro_s3_and_gpu_nodes():
    data = one(render(K8S / "overlays/eolab"), "ConfigMap")["data"]
    params = yaml.safe_load(data["params.yaml"])
    assert params["s3_endpoint"].startswith("https://") and "cloudferro.com" in params["s3_endpoint"]
    assert params["gpu_node_selector"] == "node.cloudferro.com/type=gpu"
    assert params["gpu_toleration_key"] == "node.cloudferro.com/type"
    assert data["NXF_PROFILES"].split(",") == ["k8s", "s3", "gpu"]
    work = one(render(K8S / "overlays/eolab"), "PersistentVolumeClaim", "treesits-work")
    assert work["spec"]["storageClassName"] == "nfs-csi"  # Cinder (the default class) is ReadWriteOnce


def test_generic_overlay_has_no_provider_specifics():
    data = one(render(K8S / "overlays/generic"), "ConfigMap")["data"]
    params = yaml.safe_load(data["params.yaml"])
    assert params["gpu_node_selector"] == "" and params["gpu_toleration_key"] == "" and params["s3_endpoint"] == ""
    assert "cloudferro" not in json.dumps(render(K8S / "overlays/generic"))


# ---------------------------------------------------------------- S3 bucket policies


@pytest.mark.parametrize("path", sorted((K8S / "s3").glob("*.json")), ids=lambda p: p.name)
def test_bucket_policies_are_scoped_and_never_anonymous(path):
    policy = json.loads(path.read_text())
    bucket = path.stem
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] != "*" and "*" not in json.dumps(statement["Principal"])
        assert set(statement["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        assert all(a.startswith("s3:") and "*" not in a for a in statement["Action"])
        assert "s3:DeleteBucket" not in statement["Action"] and "s3:PutBucketPolicy" not in statement["Action"]
    writes = {a for s in policy["Statement"] for a in s["Action"] if a in ("s3:PutObject", "s3:DeleteObject")}
    assert (bucket == "treesits-in") == (not writes), f"{bucket}: inputs are read-only, others writable"
