"""``python -m stnlab.preview`` = ``stnlab-preview``: kept for the documented command; the code is
in ``stnlab.cli.preview`` (entry point) and ``stnlab.analysis.preview`` (the drawing)."""

from stnlab.cli.preview import main

if __name__ == "__main__":
    raise SystemExit(main())
