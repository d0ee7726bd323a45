"""Build the reference bundle (`models/german-credit`) from the bundled German Credit data.

`make reference-bundle` and the reproducibility test both run this, so the arguments live in one
place. The bundle is built beside the destination and swapped in only when training succeeded.

    python -m creditmodel.training.reference_bundle [DESTINATION]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from creditmodel.core.jobs import ExitCode
from creditmodel.training import cli, german_credit

NAME = "german-credit"
VERSION = "1.0.0"
SEED = 0
BLAS_CORETYPE = "Haswell"


def arguments(output: Path, data: Path | None = None, features: Path | None = None) -> list[str]:
    """`creditmodel-train` arguments; paths are as given (relative ones end up in the lineage)."""
    return [
        "--data",
        str(data or german_credit.csv_path()),
        "--features",
        str(features or german_credit.features_path()),
        "--target",
        german_credit.TARGET,
        "--positive-label",
        german_credit.POSITIVE_LABEL,
        "--model-name",
        NAME,
        "--version",
        VERSION,
        "--seed",
        str(SEED),
        "--output",
        str(output),
    ]


def build(destination: Path, data: Path | None = None, features: Path | None = None) -> int:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".reference-") as tmp:
        staged = Path(tmp) / NAME
        code = cli.run(arguments(staged, data, features))
        if code != ExitCode.OK:
            return code
        shutil.rmtree(destination, ignore_errors=True)
        staged.rename(destination)
    return ExitCode.OK


def pin_blas_kernels() -> None:
    """Make OpenBLAS use its Haswell (AVX2) kernels whatever the CPU: AVX-512 kernels round
    differently, and 300 epochs amplify the last bit into other weights. Must run before numpy
    loads; re-executes the process when it is too late for that."""
    if os.environ.get("OPENBLAS_CORETYPE") == BLAS_CORETYPE:
        return
    os.environ["OPENBLAS_CORETYPE"] = BLAS_CORETYPE
    if "numpy" in sys.modules:
        module = "creditmodel.training.reference_bundle"
        os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])  # noqa: S606


def main() -> None:
    pin_blas_kernels()
    destination = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("models") / NAME
    # Repo-relative data paths keep the machine's directory layout out of the lineage and card.
    data = Path("training/creditmodel/training/data/german_credit.csv")
    features = Path("training/creditmodel/training/data/german_credit.features.json")
    if not data.is_file():
        data, features = german_credit.csv_path(), german_credit.features_path()
    sys.exit(build(destination, data, features))


if __name__ == "__main__":
    main()
