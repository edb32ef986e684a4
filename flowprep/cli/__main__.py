"""`python -m flowprep.cli`: the `flowprep` command (the form tests and launchers use)."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
