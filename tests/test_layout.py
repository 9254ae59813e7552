"""The README's layout table names every module and package of ``src/tuneline/``, and nothing that is not there."""

from __future__ import annotations

import re

from tests.conftest import REPO

PACKAGE = REPO / "src" / "tuneline"


def _rows() -> set[str]:
    text = (REPO / "README.md").read_text()
    table = text[text.index("| `src/tuneline/` |") : text.index("\n\n", text.index("| `src/tuneline/` |"))]
    names: set[str] = set()
    for line in table.splitlines()[2:]:
        first_cell = line.split("|")[1]
        names |= set(re.findall(r"`([^`]+)`", first_cell))
    return names


def test_the_layout_table_matches_the_package_tree():
    entries = {
        p.name + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if (p.is_dir() and (p / "__init__.py").is_file())
        or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
    }
    named = _rows()
    assert [n for n in named if not (PACKAGE / n).exists()] == [], "in the README layout table, not in the tree"
    top = {n.split("/")[0] + "/" if "/" in n else n for n in named}
    assert entries - top == set(), "in the tree, missing from the README layout table"
    # a package named by its parts (stages/ingest/, ...) is named whole: every part is in the table
    for package in {n.split("/")[0] for n in named if n.count("/") > 1}:
        parts = {f"{package}/{p.name}/" for p in (PACKAGE / package).iterdir() if (p / "__init__.py").is_file()}
        assert parts <= named, f"{package}/: {sorted(parts - named)} missing from the README layout table"
