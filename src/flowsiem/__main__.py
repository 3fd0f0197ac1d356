"""The `flowsiem` command as a file: `python -m flowsiem`, and `spark-submit .../flowsiem/__main__.py`.

spark-submit starts a Python application by its path, which puts this package's own directory
first on sys.path: its modules (profile, io, ...) would then shadow the standard library's for
pyspark. So that directory is dropped and the package is imported absolutely."""

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from flowsiem.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
