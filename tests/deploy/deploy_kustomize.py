"""A small pure-Python kustomize renderer, so the deploy tests can check rendered overlays without kubectl.

CI has no kubectl or kustomize binary, and the invariants we care about (probe paths, GPU limits, grace
period) live in the *rendered* objects, after the overlays' patches. This renders the subset of kustomize
that deploy/k8s uses, and refuses everything else loudly, so a manifest change that needs a new kustomize
feature fails here instead of being silently ignored:

- `resources`: files (multi-document YAML) and directories holding a `kustomization.yaml`;
- `components`: directories holding a `kind: Component` kustomization;
- `patches`: strategic-merge patches (a single object; targets itself by kind and name, or by `target`) and
  JSON6902 patches (a list of operations; needs `target`);
- `images`: `newName` / `newTag` / `digest` on pod-template containers and init containers.

Strategic merge follows Kubernetes' rules for the fields we patch: maps merge recursively, `null` deletes a
key, lists of containers / volumes / env merge by their merge key (`name`; `mountPath` for volumeMounts),
other lists are replaced, and `$patch: delete` / `$patch: replace` directives are honoured. The output was
checked against `kubectl kustomize` (kustomize v5.5) for every overlay; list order may differ from
kustomize's (it puts patched items first), which no Kubernetes semantics depend on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILE = "kustomization.yaml"
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "images"}
# Kubernetes' patchMergeKey for the list fields our patches touch; any other list is replaced wholesale.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

Resource = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render; the message names the file and what to change."""


def render(directory: Path) -> list[Resource]:
    """Render the kustomization in `directory` (a Kustomization, not a Component) to a list of objects."""
    kustomization = _load_kustomization(directory)
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{directory}: render a Kustomization; a Component is only used from one")
    return _build(directory, kustomization, [])


def find(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    """The one rendered object of `kind` (and `name`, if given); fails if there are none or several."""
    found = [
        r for r in resources if r.get("kind") == kind and (name is None or r["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        raise LookupError(f"expected one {kind} {name or ''} in the rendered output, found {len(found)}")
    return found[0]


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """Strategic-merge `patch` into `base` (neither is modified); `field` is the key holding them."""
    if isinstance(patch, dict):
        directive = patch.get("$patch")
        if directive == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if directive is not None:
            raise KustomizeError(f"unsupported $patch directive {directive!r} on field {field!r}")
        if not isinstance(base, dict):
            return _strip_directives(patch)
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = strategic_merge(None, value, key)
        return merged
    if isinstance(patch, list):
        merge_key = MERGE_KEYS.get(field or "")
        if merge_key is None or not isinstance(base, list):
            return [_strip_directives(item) for item in patch]
        return _merge_list(base, patch, merge_key)
    return copy.deepcopy(patch)


def apply_json6902(resource: Resource, operations: list[dict[str, Any]]) -> Resource:
    """Apply RFC 6902 `add` / `replace` / `remove` / `test` operations to a copy of `resource`."""
    result = copy.deepcopy(resource)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise KustomizeError(f"JSON6902 path must be a JSON pointer starting with '/': {operation}")
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
        container: Any = result
        for part in parents:
            container = container[int(part)] if isinstance(container, list) else container[part]
        if op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(container, list):
                container.insert(len(container) if last == "-" else int(last), value)
            else:
                container[last] = value
        elif op == "replace":
            key: Any = int(last) if isinstance(container, list) else last
            container[key]  # noqa: B018 -- replace requires the target to exist (KeyError/IndexError if not)
            container[key] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del container[int(last) if isinstance(container, list) else last]
        elif op == "test":
            actual = container[int(last) if isinstance(container, list) else last]
            if actual != operation["value"]:
                raise KustomizeError(f"JSON6902 test failed at {path}: {actual!r} != {operation['value']!r}")
        else:
            raise KustomizeError(f"unsupported JSON6902 op {op!r}; use add, replace, remove or test")
    return result


def _load_kustomization(directory: Path) -> dict[str, Any]:
    path = directory / KUSTOMIZATION_FILE
    if not path.is_file():
        raise KustomizeError(f"{directory} has no {KUSTOMIZATION_FILE}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(
            f"{path}: fields {sorted(unknown)} are not supported by the test renderer; "
            f"use {sorted(SUPPORTED_FIELDS)} or extend tests/deploy/deploy_kustomize.py"
        )
    return data


def _build(directory: Path, kustomization: dict[str, Any], inherited: list[Resource]) -> list[Resource]:
    """kustomize's order: accumulate resources, then components, then this level's patches and images."""
    resources = list(inherited)
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            child = _load_kustomization(path)
            if child.get("kind", "Kustomization") != "Kustomization":
                raise KustomizeError(f"{path}: a Component belongs under `components`, not `resources`")
            resources += _build(path, child, [])
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("components", []):
        path = (directory / entry).resolve()
        component = _load_kustomization(path)
        if component.get("kind") != "Component":
            raise KustomizeError(f"{path}: `components` entries must be kind: Component")
        resources = _build(path, component, resources)
    for entry in kustomization.get("patches", []):
        resources = _apply_patch(directory, entry, resources)
    for entry in kustomization.get("images", []):
        resources = [_set_image(r, entry) for r in resources]
    return resources


def _apply_patch(directory: Path, entry: dict[str, Any], resources: list[Resource]) -> list[Resource]:
    if "path" in entry:
        patch = yaml.safe_load((directory / entry["path"]).read_text())
    elif "patch" in entry:
        patch = yaml.safe_load(entry["patch"])
    else:
        raise KustomizeError(f"{directory}: a patches entry needs `path` or `patch`: {entry}")
    target = entry.get("target")
    if isinstance(patch, list):
        if target is None:
            raise KustomizeError(f"{directory}: JSON6902 patch {entry} needs a `target`")
    elif target is None:
        target = {"kind": patch["kind"], "name": patch["metadata"]["name"]}
    matched = [i for i, r in enumerate(resources) if _matches(r, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch {entry} matches no resource (target {target})")
    patched = list(resources)
    for i in matched:
        if isinstance(patch, list):
            patched[i] = apply_json6902(resources[i], patch)
        else:
            body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
            body["metadata"] = {k: v for k, v in patch.get("metadata", {}).items() if k != "name"}
            patched[i] = strategic_merge(resources[i], body)
    return patched


def _matches(resource: Resource, target: dict[str, Any]) -> bool:
    unsupported = set(target) - {"group", "version", "kind", "name"}
    if unsupported:
        raise KustomizeError(
            f"patch target fields {sorted(unsupported)} are not supported by the test renderer"
        )
    api_version = resource.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    wanted = {
        "group": group,
        "version": version,
        "kind": resource.get("kind"),
        "name": resource.get("metadata", {}).get("name"),
    }
    return all(wanted[key] == value for key, value in target.items())


def _merge_list(base: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise KustomizeError(f"list items merged by {merge_key!r} must be maps that have it: {item!r}")
        index = next((i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(_strip_directives(item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if k != "$patch" and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


def _set_image(resource: Resource, entry: dict[str, Any]) -> Resource:
    if resource.get("kind") not in POD_TEMPLATE_KINDS:
        return resource
    result = copy.deepcopy(resource)
    pod_spec = result["spec"]["template"]["spec"]
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        name, tag, digest = _split_image(container["image"])
        if name != entry["name"]:
            continue
        name = entry.get("newName", name)
        if "digest" in entry:
            container["image"] = f"{name}@{entry['digest']}"
        else:
            tag = entry.get("newTag", tag)
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return result


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """`registry:5000/repo/name:tag@sha256:...` -> (name with registry, tag, digest)."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1 :], digest or None
    return rest, None, digest or None
