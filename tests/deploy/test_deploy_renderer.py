"""The test-side kustomize renderer follows kustomize's semantics for the features deploy/k8s uses, and
refuses the ones it does not implement (its output for every overlay was also compared with
`kubectl kustomize`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_kustomize import KustomizeError, apply_json6902, find, render, strategic_merge

POD = {
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "a", "image": "reg:5000/team/app:1.0", "env": [{"name": "X", "value": "1"}]},
                    {"name": "b", "image": "other"},
                ],
                "volumes": [{"name": "model", "persistentVolumeClaim": {"claimName": "m"}}],
                "tolerations": [{"key": "old", "operator": "Exists"}],
            }
        }
    }
}


def test_strategic_merge_merges_named_lists_and_replaces_plain_ones() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}],
                    "tolerations": [{"key": "new", "operator": "Exists"}],
                }
            }
        }
    }
    merged = strategic_merge(POD, patch)["spec"]["template"]["spec"]
    assert [c["name"] for c in merged["containers"]] == ["a", "b"]
    assert merged["containers"][0]["image"] == "reg:5000/team/app:1.0"
    assert merged["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert merged["tolerations"] == [{"key": "new", "operator": "Exists"}]
    assert POD["spec"]["template"]["spec"]["tolerations"][0]["key"] == "old", "inputs are not modified"


def test_strategic_merge_null_deletes_and_patch_directives_apply() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [{"name": "model", "persistentVolumeClaim": None, "emptyDir": {}}],
                    "containers": [{"name": "b", "$patch": "delete"}],
                }
            }
        }
    }
    merged = strategic_merge(POD, patch)["spec"]["template"]["spec"]
    assert merged["volumes"] == [{"name": "model", "emptyDir": {}}]
    assert [c["name"] for c in merged["containers"]] == ["a"]
    replaced = strategic_merge({"data": {"a": "1", "b": "2"}}, {"data": {"$patch": "replace", "c": "3"}})
    assert replaced == {"data": {"c": "3"}}


def test_json6902_add_replace_remove_test() -> None:
    doc = {"spec": {"metrics": [{"v": "1"}], "max": 8, "a/b": 1}}
    out = apply_json6902(
        doc,
        [
            {"op": "test", "path": "/spec/max", "value": 8},
            {"op": "replace", "path": "/spec/metrics/0/v", "value": "2"},
            {"op": "add", "path": "/spec/metrics/-", "value": {"v": "3"}},
            {"op": "remove", "path": "/spec/a~1b"},
        ],
    )
    assert out == {"spec": {"metrics": [{"v": "2"}, {"v": "3"}], "max": 8}}
    with pytest.raises(KeyError):
        apply_json6902(doc, [{"op": "replace", "path": "/spec/missing", "value": 1}])
    with pytest.raises(KustomizeError, match="test failed"):
        apply_json6902(doc, [{"op": "test", "path": "/spec/max", "value": 9}])
    with pytest.raises(KustomizeError, match="unsupported JSON6902 op"):
        apply_json6902(doc, [{"op": "move", "from": "/spec/max", "path": "/spec/min"}])


def _write(directory: Path, files: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return directory


def _deployment() -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, **POD}


def test_render_applies_components_patches_and_images_in_kustomize_order(tmp_path: Path) -> None:
    base = _write(
        tmp_path / "base",
        {"kustomization.yaml": {"resources": ["d.yaml"]}, "d.yaml": _deployment()},
    )
    component = _write(
        tmp_path / "comp",
        {
            "kustomization.yaml": {"kind": "Component", "patches": [{"path": "p.yaml"}]},
            "p.yaml": {"kind": "Deployment", "metadata": {"name": "app"}, "spec": {"replicas": 3}},
        },
    )
    overlay = _write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": {
                "resources": [f"../{base.name}"],
                "components": [f"../{component.name}"],
                "images": [{"name": "reg:5000/team/app", "newTag": "2.0"}],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "app"},
                        "patch": "- op: replace\n  path: /spec/replicas\n  value: 5\n",
                    }
                ],
            }
        },
    )
    deployment = find(render(overlay), "Deployment", "app")
    assert deployment["spec"]["replicas"] == 5, "the overlay's patch runs after the component's"
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == ["reg:5000/team/app:2.0", "other"]


def test_render_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    unknown = _write(tmp_path / "unknown", {"kustomization.yaml": {"namePrefix": "x-", "resources": []}})
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(unknown)
    nomatch = _write(
        tmp_path / "nomatch",
        {
            "kustomization.yaml": {"resources": ["d.yaml"], "patches": [{"path": "p.yaml"}]},
            "d.yaml": _deployment(),
            "p.yaml": {"kind": "Deployment", "metadata": {"name": "typo"}, "spec": {"replicas": 1}},
        },
    )
    with pytest.raises(KustomizeError, match="matches no resource"):
        render(nomatch)
