"""Entry point of each torchrun process.

``torchrun -m tuneline.stages.train.node <stage URI>``: one node of a multi-node job (below).
``torchrun -m tuneline.stages.train.node local CONFIG SPLIT MODEL CHECKPOINTS``: one GPU of a single-node DDP run
(a word, not ``--local``: torchrun would take an option for an abbreviation of its own ``--local-addr``).

Reads the resolved config and the split that the KFP train step staged under the URI, trains (the HF Trainer
joins the torchrun process group), and rank 0 uploads the model dir to ``<stage URI>/model``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def main(stage: str) -> None:
    import fsspec

    from tuneline.config.loader import with_paths
    from tuneline.stages.train import run_train

    fs, root = fsspec.core.url_to_fs(stage)
    work = Path(tempfile.mkdtemp(prefix="tuneline-node-"))
    fs.get(f"{root}/split/", str(work / "split") + "/", recursive=True)
    config = with_paths(
        fs.cat_file(f"{root}/config.json").decode(),
        split=str(work / "split"),
        model=str(work / "model"),
        checkpoints=str(work / "checkpoints"),
    )
    run_train(config, work / "split", work / "model", work / "checkpoints")
    if int(os.environ.get("RANK", "0")) == 0:
        fs.put(str(work / "model") + "/", f"{root}/model", recursive=True)


def main_local(config_file: str, split_dir: str, model: str, checkpoints: str) -> None:
    from tuneline.config.loader import with_paths
    from tuneline.stages.train import run_train

    config = with_paths(Path(config_file).read_text(), split=split_dir, model=model, checkpoints=checkpoints)
    run_train(config, split_dir, model, checkpoints)


if __name__ == "__main__":
    if sys.argv[1] == "local":
        main_local(*sys.argv[2:6])
    else:
        main(sys.argv[1])
