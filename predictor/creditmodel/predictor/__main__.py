"""Console entry point `creditmodel-predictor`."""

import sys


def main() -> None:
    sys.exit("creditmodel-predictor: not implemented yet (see the predictor issue)")


if __name__ == "__main__":
    main()
