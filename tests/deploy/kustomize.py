"""A small kustomize stand-in for offline tests: renders a kustomization directory into the list of
objects `kubectl apply -k` would send, for the subset of kustomize that deploy/k8s uses.

Supported: `resources` (files or directories), `components`, `namespace`, `images`,
`configMapGenerator` (`files`, with a content-hash name suffix and the references to it in pod
specs rewritten), and `patches` (strategic-merge, from `path` or inline `patch`, with an optional
`target` of kind/name/labelSelector). Strategic merge is a recursive dict merge in which lists
of containers, env vars, volumes, volume mounts and ports merge by their key and every other list
is replaced, as Kubernetes' patch-merge keys do; `null` deletes a key. Any other kustomization
field raises `Unsupported`, so a manifest never relies on a feature this renderer ignores.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KINDS = {"Kustomization", "Component"}
SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "images",
    "configMapGenerator",
    "patches",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
}
# Patch-merge keys of the list fields deploy/k8s patches (from the Kubernetes API types).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class Unsupported(Exception):
    """The kustomization uses something this renderer does not implement."""


def load_docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _list_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # container ports merge by containerPort, Service ports by port
        first = items[0] if items else {}
        return "containerPort" if isinstance(first, dict) and "containerPort" in first else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, dict):
        if "$patch" in patch or any(k.startswith("$") for k in patch):
            raise Unsupported(f"patch directives are not supported: {sorted(patch)}")
        if not isinstance(base, dict):
            return copy.deepcopy(patch)
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base.get(key), value, key)
        return merged
    if isinstance(patch, list) and isinstance(base, list):
        key = _list_key(field, base + patch)
        if key and all(isinstance(i, dict) and key in i for i in base + patch):
            merged_list = [copy.deepcopy(i) for i in base]
            index = {item[key]: n for n, item in enumerate(merged_list)}
            for item in patch:
                if item[key] in index:
                    n = index[item[key]]
                    merged_list[n] = strategic_merge(merged_list[n], item, field)
                else:
                    merged_list.append(copy.deepcopy(item))
            return merged_list
    return copy.deepcopy(patch)


def _labels_match(obj: Obj, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _targets(objs: list[Obj], patch: Obj, target: Obj | None) -> list[Obj]:
    if target is None:
        target = {"kind": patch.get("kind"), "name": patch.get("metadata", {}).get("name")}
    unknown = set(target) - {"kind", "name", "labelSelector", "group", "version"}
    if unknown:
        raise Unsupported(f"patch target fields {sorted(unknown)}")
    found = [
        o
        for o in objs
        if ("kind" not in target or o["kind"] == target["kind"])
        and ("name" not in target or o["metadata"]["name"] == target["name"])
        and ("labelSelector" not in target or _labels_match(o, target["labelSelector"]))
    ]
    if not found:
        raise AssertionError(f"patch target {target} matches nothing")
    return found


def _apply_patches(objs: list[Obj], root: Path, patches: list[Obj]) -> list[Obj]:
    for entry in patches:
        extra = set(entry) - {"path", "patch", "target"}
        if extra:
            raise Unsupported(f"patch fields {sorted(extra)}")
        body = (
            load_docs(root / entry["path"])
            if "path" in entry
            else list(yaml.safe_load_all(entry["patch"]))
        )
        if len(body) != 1:
            raise Unsupported("a patch must hold exactly one document")
        patch = body[0]
        if "op" in patch or isinstance(patch, list):
            raise Unsupported("JSON6902 patches")
        chosen = {id(o) for o in _targets(objs, patch, entry.get("target"))}
        # The patch's own name only picks the target; it never renames anything.
        patch = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
        patch["metadata"] = {k: v for k, v in patch.get("metadata", {}).items() if k != "name"}
        objs = [strategic_merge(o, patch) if id(o) in chosen else o for o in objs]
    return objs


def _split_image(image: str) -> tuple[str, str]:
    """('repo/name', ':tag' or '@digest' or '')."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _pod_spec(obj: Obj) -> Obj | None:
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    return spec.get("template", {}).get("spec")


def _containers(obj: Obj) -> list[Obj]:
    pod = _pod_spec(obj) or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _set_images(objs: list[Obj], images: list[Obj]) -> None:
    for rule in images:
        for obj in objs:
            for container in _containers(obj):
                name, suffix = _split_image(container["image"])
                if name != rule["name"]:
                    continue
                if "newTag" in rule:
                    suffix = f":{rule['newTag']}"
                if "digest" in rule:
                    suffix = f"@{rule['digest']}"
                container["image"] = rule.get("newName", name) + suffix


def _generate_configmaps(root: Path, generators: list[Obj]) -> tuple[list[Obj], dict[str, str]]:
    made, renamed = [], {}
    for gen in generators:
        extra = set(gen) - {"name", "files"}
        if extra:
            raise Unsupported(f"configMapGenerator fields {sorted(extra)}")
        data = {}
        for entry in gen["files"]:
            key, _, rel = entry.rpartition("=")
            path = root / rel
            data[key or path.name] = path.read_text()
        digest = hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{gen['name']}-{digest}"
        renamed[gen["name"]] = name
        made.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        )
    return made, renamed


def _rename_configmap_refs(objs: list[Obj], renamed: dict[str, str]) -> None:
    def fix(ref: Obj | None) -> None:
        if ref and ref.get("name") in renamed:
            ref["name"] = renamed[ref["name"]]

    for obj in objs:
        pod = _pod_spec(obj)
        if not pod:
            continue
        for volume in pod.get("volumes", []):
            fix(volume.get("configMap"))
            for source in volume.get("projected", {}).get("sources", []):
                fix(source.get("configMap"))
        for container in _containers(obj):
            for env in container.get("env", []):
                fix(env.get("valueFrom", {}).get("configMapKeyRef"))
            for env_from in container.get("envFrom", []):
                fix(env_from.get("configMapRef"))


def render(
    directory: Path, *, expect: str = "Kustomization", inherited: list[Obj] | None = None
) -> list[Obj]:
    """The objects the kustomization in `directory` produces. A Component is rendered on top of
    the objects its parent gathered so far (`inherited`): it adds its resources, then its
    transformations apply to everything."""
    directory = directory.resolve()
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if kust.get("kind", "Kustomization") != expect:
        raise AssertionError(f"{directory}: kind {kust.get('kind')}, expected {expect}")
    unknown = set(kust) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields {sorted(unknown)}")

    objs: list[Obj] = list(inherited or [])
    for entry in kust.get("resources", []):
        path = directory / entry
        objs += render(path) if path.is_dir() else load_docs(path)
    for entry in kust.get("components", []):
        objs = render(directory / entry, expect="Component", inherited=objs)
    generated, renamed = _generate_configmaps(directory, kust.get("configMapGenerator", []))
    objs += generated
    _rename_configmap_refs(objs, renamed)
    objs = _apply_patches(objs, directory, kust.get("patches", []))
    _set_images(objs, kust.get("images", []))
    if "namespace" in kust:
        for obj in objs:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kust["namespace"]
    return objs
