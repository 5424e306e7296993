"""`python -m tteval`: the same command line as `tteval`."""

from tteval.cli import main

main()
