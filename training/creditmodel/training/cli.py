"""Console entry point `creditmodel-train`."""

import sys


def main() -> None:
    sys.exit("creditmodel-train: not implemented yet (see the training issue)")
