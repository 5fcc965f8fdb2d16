"""``python -m stnlab.evaluate`` = ``stnlab-eval``: kept for the documented command; the code is in
``stnlab.cli.evaluate`` (entry point) and ``stnlab.run.evaluate`` (the function)."""

from stnlab.cli.evaluate import main

if __name__ == "__main__":
    main()
