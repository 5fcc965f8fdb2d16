"""``python -m stnlab.train`` = ``stnlab-train``: kept for the documented command; the code is in
``stnlab.cli.train`` (entry point) and ``stnlab.run.train`` (the function)."""

from stnlab.cli.train import main

if __name__ == "__main__":
    main()
