"""Render a kustomization with the real kustomize built into kubectl (`kubectl kustomize DIR`,
offline): the objects `kubectl apply -k DIR` would send. Tests that need it skip where kubectl is
not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

Obj = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed (its built-in kustomize renders deploy/k8s)")
    return path


def render(directory: Path) -> list[Obj]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    objs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert objs, f"kubectl kustomize {directory} rendered nothing"
    return objs
