"""`python -m flowprep`: the `flowprep` command, for launchers that start modules (torchrun -m flowprep)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
