"""Write the flags ``vllm serve`` accepts in a given vLLM wheel, without installing or importing it.

    pip download --no-deps vllm==0.11.0 -d /tmp/vllm && unzip -q /tmp/vllm/*.whl 'vllm/*' -d /tmp/vllm
    python tests/data/runtime_flags/extract_vllm_flags.py /tmp/vllm 0.11.0 > tests/data/runtime_flags/vllm-0.11.0.txt

Flags come from every literal ``add_argument("--…")`` in the engine and OpenAI-server argument modules, plus
the fields of the ``FrontendArgs`` dataclass, which the server turns into ``--field-name`` options.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODULES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py")


def flags(root: Path) -> set[str]:
    found: set[str] = set()
    for module in MODULES:
        tree = ast.parse((root / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                found |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
            if isinstance(node, ast.ClassDef) and node.name == "FrontendArgs":
                found |= {
                    f"--{s.target.id.replace('_', '-')}"
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                }
    return found


if __name__ == "__main__":
    root, version = Path(sys.argv[1]), sys.argv[2]
    print(f"# vllm serve {version}: flags extracted from the wheel by extract_vllm_flags.py")
    print("\n".join(sorted(flags(root))))
