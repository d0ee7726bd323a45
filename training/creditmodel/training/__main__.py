"""`python -m creditmodel.training`: the same as `creditmodel-train`."""

from creditmodel.training.cli import main

main()
