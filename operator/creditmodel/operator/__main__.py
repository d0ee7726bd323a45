"""Console entry point `creditmodel-operator`."""

import sys


def main() -> None:
    sys.exit("creditmodel-operator: not implemented yet (see the operator issue)")


if __name__ == "__main__":
    main()
