"""dvc.yaml's code deps cover each stage's real import closure, so changing any module a stage uses re-runs it.

The closure is read from the source (every ``import tuneline...`` anywhere in a module, lazy imports
included), starting at the stage's package, the function ``tuneline <stage>`` calls. ``cli.py`` itself, the
thin shell over every stage, is left out: it would make every stage re-run for a change to any command.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SRC = REPO / "src"
STAGES = ("generate", "ingest", "clean", "split", "train", "evaluate", "register")
#: ``tuneline train`` goes through its launcher (whose torchrun ranks run that same module).
LAUNCHERS = {"train": ["tuneline.launch.training"]}


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> set[str]:
    """Modules named by ``path``'s imports: ``from a.b import c`` names a.b and, if it is a module, a.b.c."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == "tuneline" and module_file(n)}


def closure(start: str, also: list[str] | None = None) -> set[Path]:
    package = module_file(start)
    assert package is not None and package.name == "__init__.py"
    # a stage is its whole package; other packages count only with the modules actually imported
    todo = [start, *(f"{start}.{p.stem}" for p in package.parent.glob("*.py") if p.stem != "__init__"), *(also or [])]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__ too
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imports(path))
    return {module_file(n) for n in seen} - {SRC / "tuneline" / "cli.py"}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_code_deps_cover_the_stages_import_closure(stage: str) -> None:
    deps = [
        d if isinstance(d, str) else next(iter(d))
        for d in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    ]
    needed = closure(f"tuneline.stages.{stage}", LAUNCHERS.get(stage))
    assert SRC / "tuneline" / "stages" / stage / "run.py" in needed
    missing = sorted(p.relative_to(REPO).as_posix() for p in needed if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} misses code deps: {missing}"


def test_the_closure_follows_lazy_imports_inside_functions(tmp_path: Path) -> None:
    # evaluate loads the trained model and the registry's champion inside functions, not at the top
    needed = {p.relative_to(SRC).as_posix() for p in closure("tuneline.stages.evaluate")}
    assert {"tuneline/models/trained.py", "tuneline/registry.py", "tuneline/stages/train/data.py"} <= needed
