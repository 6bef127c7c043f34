#!/usr/bin/env python3
"""`python torch_checks.py` from models/ with the torch venv: treesits_models.torch_checks (installed
with the `torch` extra, the same is `treesits-torch-checks`)."""

import sys

from treesits_models.torch_checks import main

if __name__ == "__main__":
    sys.exit(main())
