"""A small, offline renderer for exactly the kustomize features kubernetes/ uses, so the manifests can be
checked on a machine without kubectl (Debian 12 has no kubectl package; kubectl comes from Kubernetes' own
apt repository). When kubectl is installed, tests/kubernetes/test_manifests.py also renders every overlay
with `kubectl kustomize` and requires the same objects, so this file cannot drift from kustomize silently.

Supported (anything else is refused with an error naming the field):
  resources (YAML files, directories with a kustomization), components (directories with a
  `kind: Component` kustomization, run on what the including kustomization has accumulated: after its
  resources and generators, before its transformers, as kustomize 5 does), namespace, labels
  (pairs, includeTemplates), images (name, newName, newTag, digest), patches (JSON 6902 ops
  add/replace/remove, inline or from a file, selected by target kind/name/namespace; of strategic merge
  patches only `$patch: delete` of a whole object), configMapGenerator (files, envs, literals; behavior
  create/merge/replace; the name suffix hash as kustomize computes it, and the references to it from pod
  specs), generatorOptions.disableNameSuffixHash.

Usage: python tests/kubernetes/kustomize_lite.py kubernetes/overlays/eolab   # YAML on stdout
"""

import copy
import hashlib
import json
import sys
from pathlib import Path

import yaml

SUPPORTED_FIELDS = {
    "apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "patches",
    "configMapGenerator", "generatorOptions",
}
KINDS = {"Kustomization": "kustomize.config.k8s.io/v1beta1", "Component": "kustomize.config.k8s.io/v1alpha1"}
CLUSTER_SCOPED = {
    "Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "CustomResourceDefinition", "PriorityClass", "Node", "RuntimeClass", "IngressClass",
}
# Kinds whose pod template is at spec.template (labels.includeTemplates, images, config references).
TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(Exception):
    pass


def load_kustomization(directory: Path, kind: str = "Kustomization") -> dict:
    """The kustomization in directory, which must be of `kind` (a Component only where components are
    listed, a Kustomization everywhere else, as kustomize requires)."""
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = directory / name
        if path.is_file():
            k = yaml.safe_load(path.read_text()) or {}
            unknown = set(k) - SUPPORTED_FIELDS
            if unknown:
                raise KustomizeError(f"{path}: fields not supported by kustomize_lite: {sorted(unknown)}")
            found = k.get("kind", "Kustomization")
            if found != kind:
                raise KustomizeError(f"{path}: kind {found!r} where a {kind} is expected")
            if k.get("apiVersion", KINDS[kind]) != KINDS[kind]:
                raise KustomizeError(f"{path}: apiVersion of a {kind} is {KINDS[kind]}, not {k['apiVersion']!r}")
            return k
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def pod_specs(obj: dict):
    """The pod specs inside an object (Pod, workload templates, CronJob's job template)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        yield spec
    elif kind in TEMPLATE_KINDS:
        yield spec.get("template", {}).get("spec", {})
    elif kind == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})


def containers(spec: dict):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def env_file(path: Path) -> dict:
    data = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise KustomizeError(f"{path}: line {line!r} is not KEY=VALUE")
        data[key] = value
    return data


def generate_configmap(directory: Path, gen: dict) -> dict:
    data = {}
    for entry in gen.get("files") or []:
        key, sep, rel = entry.partition("=")
        if not sep:
            key, rel = Path(entry).name, entry
        data[key] = (directory / rel).read_text()
    for entry in gen.get("envs") or []:
        data.update(env_file(directory / entry))
    for entry in gen.get("literals") or []:
        key, _, value = entry.partition("=")
        data[key] = value
    unknown = set(gen) - {"name", "behavior", "files", "envs", "literals", "namespace", "options"}
    if unknown:
        raise KustomizeError(f"{directory}: configMapGenerator fields not supported: {sorted(unknown)}")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
    if gen.get("namespace"):
        cm["metadata"]["namespace"] = gen["namespace"]
    return cm


def go_json(value) -> str:
    """json.Marshal as Go writes it: sorted keys, no spaces, UTF-8, <, > and & escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def configmap_hash(cm: dict) -> str:
    """kustomize's name suffix: sha256 of {"data", "kind", "name"} as Go's JSON, first 10 hex digits with
    the characters that could spell words swapped out (kustomize api/hasher). kustomize 5 looks the name
    up as one field called "metadata/name", finds nothing and hashes an empty name, so the suffix
    depends on the data only; kubectl kustomize agrees with this (checked by the tests)."""
    encoded = {"kind": "ConfigMap", "name": "", "data": cm.get("data") or {}}
    if cm.get("binaryData"):
        encoded["binaryData"] = cm["binaryData"]
    digest = hashlib.sha256(go_json(encoded).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def apply_json6902(obj: dict, ops: list, where: str):
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            else:
                raise KustomizeError(f"{where}: JSON patch op {kind!r} not supported")
        else:
            if kind in ("replace", "remove") and last not in parent:
                raise KustomizeError(f"{where}: {kind} {op['path']}: no such field")
            if kind in ("add", "replace"):
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            else:
                raise KustomizeError(f"{where}: JSON patch op {kind!r} not supported")


def matches(obj: dict, target: dict) -> bool:
    meta = obj.get("metadata", {})
    for key, value in target.items():
        if key == "kind" and obj.get("kind") != value:
            return False
        if key == "name" and meta.get("name") != value:
            return False
        if key == "namespace" and meta.get("namespace") != value:
            return False
        if key in ("group", "version"):
            group, _, version = obj.get("apiVersion", "").rpartition("/")
            if (group if key == "group" else version) != value:
                return False
        if key not in ("kind", "name", "namespace", "group", "version"):
            raise KustomizeError(f"patch target field {key!r} not supported")
    return True


def set_image(container: dict, images: list):
    image = container.get("image", "")
    name, digest = (image.split("@", 1) + [None])[:2]
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    for rule in images:
        if rule["name"] != name:
            continue
        name = rule.get("newName", name)
        if "digest" in rule:
            tag, digest = None, rule["digest"]
        elif "newTag" in rule:
            tag, digest = str(rule["newTag"]), None
        container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
        return


def build(directory, _top=True):
    """Render a kustomization directory into a list of objects."""
    directory = Path(directory)
    k = load_kustomization(directory)
    objects, generated = [], []
    accumulate(directory, k, objects, generated)

    if not _top:
        return objects, generated

    if not (k.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        renames = {}
        for cm in generated:
            old = cm["metadata"]["name"]
            cm["metadata"]["name"] = renames[old] = f"{old}-{configmap_hash(cm)}"
        for obj in objects:
            for spec in pod_specs(obj):
                rename_configmap_refs(spec, renames)
    return objects


def accumulate(directory: Path, k: dict, objects: list, generated: list):
    """Add the kustomization k's resources to objects (generated: the generated ConfigMaps among them),
    run its generators, then its components, then its transformers over all of objects. A component runs
    on the including kustomization's lists, so its patches and merges reach everything accumulated so far
    (kustomize's order: a component's generator merge wins over its includer's)."""
    for entry in k.get("resources") or []:
        path = directory / entry
        if path.is_dir():
            sub_objects, sub_generated = build(path, _top=False)
            objects += sub_objects
            generated += sub_generated
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]

    for gen in k.get("configMapGenerator") or []:
        cm = generate_configmap(directory, gen)
        behavior = gen.get("behavior", "create")
        existing = [g for g in generated if g["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"{directory}: ConfigMap {gen['name']} already exists: use behavior merge or replace")
            generated.append(cm)
            objects.append(cm)
        elif behavior in ("merge", "replace"):
            if not existing:
                raise KustomizeError(f"{directory}: ConfigMap {gen['name']} to {behavior} not found in the resources")
            if behavior == "merge":
                existing[0]["data"].update(cm["data"])
            else:
                existing[0]["data"] = cm["data"]
        else:
            raise KustomizeError(f"{directory}: configMapGenerator behavior {behavior!r}")

    for entry in k.get("components") or []:
        path = directory / entry
        if not path.is_dir():
            raise KustomizeError(f"{directory}: component {entry}: not a directory with a kustomization")
        accumulate(path, load_kustomization(path, "Component"), objects, generated)

    for patch in k.get("patches") or []:
        if "path" in patch:
            ops = yaml.safe_load((directory / patch["path"]).read_text())
        else:
            ops = yaml.safe_load(patch["patch"])
        target = patch.get("target") or {}
        if isinstance(ops, dict):
            # A strategic merge patch: only the deletion of whole objects, selected by the target.
            if ops.get("$patch") != "delete" or set(ops) - {"$patch", "apiVersion", "kind", "metadata"}:
                raise KustomizeError(f"{directory}: of strategic merge patches only `$patch: delete` is supported")
            if not target:
                raise KustomizeError(f"{directory}: a `$patch: delete` needs a target (kind and name)")
        elif not isinstance(ops, list):
            raise KustomizeError(f"{directory}: a patch must be JSON 6902 ops or a `$patch: delete`")
        hits = [o for o in objects if matches(o, target)]
        if not hits:
            raise KustomizeError(f"{directory}: patch target {patch.get('target')} matches nothing")
        for obj in hits:
            if isinstance(ops, dict):
                objects[:] = [o for o in objects if o is not obj]
                generated[:] = [g for g in generated if g is not obj]
            else:
                apply_json6902(obj, ops, f"{directory}: patch on {obj['kind']}/{obj['metadata']['name']}")

    namespace = k.get("namespace")
    if namespace:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace

    for rule in k.get("labels") or []:
        unknown = set(rule) - {"pairs", "includeSelectors", "includeTemplates"}
        if unknown or rule.get("includeSelectors"):
            raise KustomizeError(f"{directory}: labels options not supported: {sorted(unknown) or 'includeSelectors'}")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(rule["pairs"])
            if rule.get("includeTemplates"):
                for template in pod_templates(obj):
                    template.setdefault("metadata", {}).setdefault("labels", {}).update(rule["pairs"])

    for obj in objects:
        for spec in pod_specs(obj):
            for c in containers(spec):
                set_image(c, k.get("images") or [])


def pod_templates(obj: dict):
    """The templates whose labels kustomize's `labels: includeTemplates` sets (its templateLabels field
    specs): spec.template of the workloads; a CronJob's job template and the pod template inside it."""
    kind = obj.get("kind")
    if kind in TEMPLATE_KINDS:
        yield obj["spec"].setdefault("template", {})
    elif kind == "CronJob":
        job_template = obj["spec"].setdefault("jobTemplate", {})
        yield job_template
        yield job_template.setdefault("spec", {}).setdefault("template", {})


def rename_configmap_refs(spec: dict, renames: dict):
    def fix(ref):
        if ref and ref.get("name") in renames:
            ref["name"] = renames[ref["name"]]

    for volume in spec.get("volumes") or []:
        fix(volume.get("configMap"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            fix(source.get("configMap"))
    for c in containers(spec):
        for env in c.get("env") or []:
            fix((env.get("valueFrom") or {}).get("configMapKeyRef"))
        for env_from in c.get("envFrom") or []:
            fix(env_from.get("configMapRef"))


def main(argv):
    if len(argv) != 2:
        print("usage: kustomize_lite.py DIR", file=sys.stderr)
        return 2
    try:
        objects = build(argv[1])
    except (KustomizeError, OSError, KeyError, yaml.YAMLError) as e:
        print(f"kustomize_lite: error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
