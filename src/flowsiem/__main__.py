"""The `flowsiem` command as a file: `python -m flowsiem`, and `spark-submit .../flowsiem/__main__.py`
(spark-submit starts a Python application by its path, so the import is absolute)."""

from flowsiem.cli import main

if __name__ == "__main__":
    main()
