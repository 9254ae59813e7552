"""Write the flags vLLM's OpenAI-compatible server accepts, from its own argument parser (run in the serving venv).

    VLLM_TARGET_DEVICE=cpu .venv-serve/bin/python tests/data/runtime_flags/dump_vllm_flags.py \
        > tests/data/runtime_flags/vllm-$(.venv-serve/bin/python -c 'import vllm; print(vllm.__version__)').txt

The chart's vLLM args are checked against this list (tests/test_chart.py); the local server tests run the
same vLLM release, so the pinned image, the list and the engine the tests start are one release line.
"""

from __future__ import annotations

import vllm
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = make_arg_parser(FlexibleArgumentParser())
flags = sorted({s for action in parser._actions for s in action.option_strings if s.startswith("--")})
print(f"# vLLM {vllm.__version__}: flags of vllm.entrypoints.openai.api_server (dump_vllm_flags.py)")
print("\n".join(flags))
