"""`python -m berth_cli`: the `berth` command without its script."""

from berth_cli import main

main()
