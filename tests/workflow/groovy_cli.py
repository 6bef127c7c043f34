"""Running Groovy (from Debian) on the pipeline's files, for the workflow tests."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def groovy(*args: str) -> str:
    """`groovy ARGS…` in the repository root; its stdout, or an AssertionError with its output."""
    env = dict(os.environ)
    if not env.get("JAVA_HOME"):
        java = shutil.which("java")
        if java:
            env["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    r = subprocess.run(["groovy", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"groovy {' '.join(args)} failed:\n{r.stdout}\n{r.stderr[-4000:]}")
    return r.stdout
