"""Shared by the pytest suites under tests/: where the treesits binaries a test runs come from."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def treesits_bins():
    """`treesits_bins(*tools)`: the folder holding every one of `tools` — $TREESITS_BIN_DIR, else the
    repo's target/release, else target/debug; the test skips, naming the build, when none has them."""

    def find(*tools):
        given = os.environ.get("TREESITS_BIN_DIR")
        if given:
            return Path(given)
        for profile in ("release", "debug"):
            d = ROOT / "target" / profile
            if all((d / t).is_file() for t in tools):
                return d
        pytest.skip(f"no treesits binaries: cargo build --release {' '.join('-p ' + t for t in tools)} "
                    "(or set TREESITS_BIN_DIR)")

    return find
