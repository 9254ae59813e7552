"""A stand-in for the Kubernetes API plus the Kubeflow Trainer controller, for the multi-node train step.

It answers the four ``CustomObjectsApi`` calls the step makes, the way the API server does: a body that does
not validate against the published TrainJob CRD is refused with 422, a second create of one name with 409, an
unknown name with 404. Its "controller" runs a created TrainJob as the torch runtime would: one process per
node executing the trainer's command with the ``PET_*`` variables torchrun reads (nodes, node rank, processes
per node, master address), each node in its own working directory, then records ``Complete`` or ``Failed``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.k8s_schemas import CustomObjectsStandIn

CRD = ("kubeflow-trainer/trainer.kubeflow.org_trainjobs.yaml", "v1alpha1")


class TrainerCluster(CustomObjectsStandIn):
    GVR = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
    CRD = CRD

    # ---------------------------------------------------------------- controller
    def _run(self, job: dict[str, Any]) -> dict[str, Any]:
        trainer = job["spec"]["trainer"]
        nodes, port = trainer["numNodes"], free_port()
        bin_dir = Path(sys.executable).parent
        procs = []
        for rank in range(nodes):
            node_dir = self.workdir / f"node-{rank}"
            node_dir.mkdir(parents=True, exist_ok=True)
            env = dict(
                os.environ,
                PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                TMPDIR=str(node_dir),
                PET_NNODES=str(nodes),
                PET_NODE_RANK=str(rank),
                PET_NPROC_PER_NODE=str(trainer["numProcPerNode"]),
                PET_MASTER_ADDR="127.0.0.1",
                PET_MASTER_PORT=str(port),
            )
            procs.append(
                subprocess.Popen(
                    trainer["command"],
                    cwd=node_dir,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        failed = [i for i, p in enumerate(procs) if p.returncode]
        if failed:
            return {
                "conditions": [
                    {"type": "Failed", "status": "True", "message": f"node {failed[0]}: {outputs[failed[0]][-2000:]}"}
                ]
            }
        return {"conditions": [{"type": "Complete", "status": "True", "message": "TrainJob completed"}]}
