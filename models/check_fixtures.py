#!/usr/bin/env python3
"""`python3 models/check_fixtures.py`: the CI check of the fixture models (treesits_models.check_fixtures;
installed, the same is `treesits-check-fixtures`). Run as a script, Python puts models/ on the path."""

import sys

from treesits_models.check_fixtures import main

if __name__ == "__main__":
    sys.exit(main())
