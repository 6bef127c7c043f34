"""One Rust toolchain for every image, pinned in containers/versions.env, new enough for the workspace and
for every locked dependency: `BUILD_MODE=source` must be able to succeed.

    versions.env RUST_VERSION  >=  Cargo.toml rust-version  >=  every locked package's rust_version
    versions.env RUST_IMAGE    =   the builder image of that exact toolchain
    every Dockerfile that runs cargo builds FROM ${RUST_IMAGE} and checks `rustc --version` against the pin

Run: .venv/bin/python -m pytest tests/containers   (scripts/test does)
"""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from test_dockerfiles import CONTAINERS, DOCKERFILES, IMAGES, ROOT, arg_defaults, read_versions, stages


def version(text):
    """'1.92' or '1.92.0' -> (1, 92, 0)."""
    parts = [int(p) for p in text.split(".")]
    assert 2 <= len(parts) <= 3, text
    return tuple(parts + [0] * (3 - len(parts)))


def workspace_rust_version():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return manifest["workspace"]["package"]["rust-version"]


def locked_packages():
    """Every package of Cargo.lock with its declared rust_version (all platforms: what any build may compile).
    Offline once the registry cache holds the crates; otherwise cargo fetches them from crates.io."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo/bin/cargo")
    run = subprocess.run([cargo, "metadata", "--locked", "--format-version", "1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["packages"]


def pinned_toolchain():
    pins = read_versions()
    assert "RUST_VERSION" in pins, "containers/versions.env pins no RUST_VERSION (the one toolchain of every image)"
    return pins["RUST_VERSION"]


def cargo_dockerfiles():
    return [d for d in DOCKERFILES if "cargo build" in d.read_text()]


def test_the_pinned_builder_image_is_the_pinned_toolchain():
    pins = read_versions()
    rust = pinned_toolchain()
    assert re.fullmatch(r"\d+\.\d+\.\d+", rust), f"RUST_VERSION={rust}: an exact x.y.z release"
    tag = pins["RUST_IMAGE"].rpartition(":")[2]
    assert tag.startswith(f"{rust}-"), f"RUST_IMAGE={pins['RUST_IMAGE']} is not Rust {rust}"
    # Debian 12 like the runtime stages: the binaries link its glibc (2.36) and GDAL (libgdal32).
    assert tag.endswith("-bookworm"), pins["RUST_IMAGE"]


def test_the_pinned_toolchain_builds_the_workspace():
    needed = workspace_rust_version()
    image = read_versions()["RUST_IMAGE"]
    in_image = re.match(r"\d+\.\d+(\.\d+)?", image.rpartition(":")[2]).group(0)
    for key, rust in (("RUST_IMAGE", lambda: in_image), ("RUST_VERSION", pinned_toolchain)):
        rust = rust()
        assert version(rust) >= version(needed), (
            f"containers/versions.env {key} is Rust {rust} but Cargo.toml needs rust-version {needed}: "
            "BUILD_MODE=source cannot build"
        )


def test_workspace_rust_version_covers_every_locked_dependency():
    needed = version(workspace_rust_version())
    packages = locked_packages()
    assert len(packages) > 50, "cargo metadata listed too few packages"
    declared = [(version(p["rust_version"]), p["name"], p["version"]) for p in packages if p.get("rust_version")]
    assert any(p["name"] == "ort" for p in packages)
    too_new = sorted((v, n, pv) for v, n, pv in declared if v > needed)
    assert not too_new, f"Cargo.toml rust-version {workspace_rust_version()} is older than: {too_new}"
    # The floor is real: some locked package needs exactly the workspace's version (today ort 2.0.0-rc.15).
    assert max(v for v, _, _ in declared) == needed, "rust-version is higher than any dependency needs"


def test_every_image_with_rust_code_takes_its_toolchain_from_the_pin():
    rust, image = pinned_toolchain(), read_versions()["RUST_IMAGE"]
    dockerfiles = cargo_dockerfiles()
    assert {d.parent.name for d in dockerfiles} == {"gdal-tools", "predict-cpu", "predict-cuda"}
    for dockerfile in dockerfiles:
        name = dockerfile.relative_to(ROOT)
        defaults = arg_defaults(dockerfile)
        assert defaults.get("RUST_IMAGE") == image and defaults.get("RUST_VERSION") == rust, name
        (build,) = [(from_arg, body) for from_arg, body in stages(dockerfile)[1:] if "cargo build" in str(body)]
        from_arg, body = build
        assert from_arg.split()[0] == "${RUST_IMAGE}", f"{name}: cargo runs in {from_arg}, not the pinned builder"
        assert ("ARG", "RUST_VERSION") in body, f"{name}: the build stage does not see the pin"
        (run,) = [arg for k, arg in body if k == "RUN" and "cargo build" in arg]
        # A substituted builder (--build-arg RUST_IMAGE=..., as scripts/container-check does) must carry the
        # same toolchain, or the source build stops before compiling anything.
        check = run.index('case "$(rustc --version)" in "rustc ${RUST_VERSION} "*) ;;')
        assert check < run.index("cargo build"), f"{name}: the toolchain is checked after the build"
        assert "--locked" in run[run.index("cargo build"):], name


def test_nothing_else_names_a_rust_toolchain():
    # No second pin hiding in a script or a document that a bump would miss.
    rust = pinned_toolchain()
    for path in [CONTAINERS / "build", CONTAINERS / "README.md", ROOT / "scripts/container-check", *DOCKERFILES]:
        for found in re.findall(r"rust:(\d+\.\d+(?:\.\d+)?)", path.read_text()):
            assert found == rust, f"{path.relative_to(ROOT)} names rust:{found}, the pin is {rust}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_build_script_passes_the_pin_to_every_cargo_image(dockerfile):
    run = subprocess.run([str(CONTAINERS / "build"), "--dry-run", dockerfile.parent.name],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    passed = dict(re.findall(r"--build-arg ([A-Z_]+)=(\S+)", run.stdout))
    if dockerfile in cargo_dockerfiles():
        assert passed["RUST_VERSION"] == pinned_toolchain()
        assert passed["RUST_IMAGE"] == read_versions()["RUST_IMAGE"]
    else:
        assert "RUST_VERSION" not in passed and "RUST_IMAGE" not in passed
