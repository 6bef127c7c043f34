"""Static checks of containers/: hadolint, pinned versions in one place, and the image rules of DESIGN.md §7
(bash + procps, no binary ENTRYPOINT, non-root numeric USER, OCI labels, fully qualified bases).

Run: .venv/bin/python -m pytest tests/containers   (scripts/test does)
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
DOCKERFILES = sorted(CONTAINERS.glob("*/Dockerfile"))
IMAGES = [p.parent.name for p in DOCKERFILES]
OCI_LABELS = {"title", "description", "version", "revision", "licenses", "source", "base.name"}


def read_versions(path=CONTAINERS / "versions.env"):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"versions.env: bad line {line!r}"
        assert key not in pins, f"versions.env: {key} pinned twice"
        pins[key] = value
    return pins


def instructions(path):
    """(keyword, argument) pairs with continuations joined and comment lines dropped, as Docker parses."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, arg = buf.strip().partition(" ")
        out.append((keyword.upper(), arg.strip()))
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


def stages(path):
    """[(from_argument, [instructions])]; the global ARGs before the first FROM come as stage None."""
    result = [(None, [])]
    for keyword, arg in instructions(path):
        if keyword == "FROM":
            result.append((arg, []))
        else:
            result[-1][1].append((keyword, arg))
    return result


def arg_defaults(path):
    defaults = {}
    for keyword, arg in instructions(path):
        if keyword == "ARG" and "=" in arg:
            name, _, value = arg.partition("=")
            value = value.strip('"')
            assert defaults.get(name, value) == value, f"{path}: ARG {name} has two different defaults"
            defaults[name] = value
    return defaults


def test_every_image_has_a_dockerfile():
    assert set(IMAGES) == {"gdal-tools", "predict-cpu", "predict-cuda", "submitter"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    run = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    # The check above is only worth something if the linter actually runs and fails.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    run = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert run.returncode != 0
    assert "DL3006" in run.stdout and "DL3008" in run.stdout


def test_arg_defaults_equal_versions_env():
    pins = read_versions()
    used = set()
    for dockerfile in DOCKERFILES:
        for name, value in arg_defaults(dockerfile).items():
            if name in pins:
                used.add(name)
                assert value == pins[name], (
                    f"{dockerfile.relative_to(ROOT)}: ARG {name}={value} but versions.env has {pins[name]}"
                )
            elif name.endswith(("_IMAGE", "_VERSION", "_SHA256")):
                pytest.fail(f"{dockerfile.relative_to(ROOT)}: ARG {name} is a version but not in versions.env")
    assert used == set(pins), f"versions.env keys no Dockerfile declares: {sorted(set(pins) - used)}"


def test_versions_env_is_fully_qualified_and_pinned():
    for key, value in read_versions().items():
        if key.endswith("_IMAGE"):
            host = value.split("/")[0]
            assert "." in host or host == "localhost", f"{key}={value}: not fully qualified (registry host first)"
            tag = value.rpartition(":")[2]
            assert "@sha256:" in value or (re.search(r"\d", tag) and tag != "latest"), f"{key}={value}: not pinned"
        elif key.endswith("_SHA256"):
            assert re.fullmatch(r"[0-9a-f]{64}", value), f"{key}={value}: not a sha256"
        else:
            assert re.fullmatch(r"\d+(\.\d+)+", value), f"{key}={value}: not an exact version"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_bases_come_from_build_args(dockerfile):
    all_stages = stages(dockerfile)
    global_args = {a.partition("=")[0] for k, a in all_stages[0][1] if k == "ARG"}
    names = set()
    for from_arg, _ in all_stages[1:]:
        image, _, alias = from_arg.partition(" AS ")
        m = re.fullmatch(r"\$\{([A-Z_]+)\}", image.strip())
        assert m and m.group(1) in global_args or image.strip() in names, (
            f"{dockerfile.relative_to(ROOT)}: FROM {from_arg}: base must be a global build ARG (so a local base can be substituted)"
        )
        names.add(alias.strip())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_final_stage_runs_under_nextflow_and_any_uid(dockerfile):
    from_arg, final = stages(dockerfile)[-1]
    text = " ".join(arg for _, arg in final)
    keywords = [k for k, _ in final]

    labels = set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", text))
    assert OCI_LABELS <= labels, f"missing OCI labels: {OCI_LABELS - labels}"

    entrypoints = [arg for k, arg in final if k == "ENTRYPOINT"]
    assert all(e == "[]" for e in entrypoints), f"binary ENTRYPOINT {entrypoints}: Nextflow needs `bash -c`"

    users = [arg for k, arg in final if k == "USER"]
    assert users, "no USER: the image would default to root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: must be numeric non-root (runAsNonRoot checks it)"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN"), "RUN after USER"

    env = " ".join(arg for k, arg in final if k == "ENV")
    assert re.search(r"\bHOME=/tmp\b", env), "HOME must point somewhere any UID can write"

    if "NEXTFLOW_IMAGE" in from_arg:
        # The Nextflow base ships bash and ps; the submitter runs nextflow itself, not task scripts.
        # Nothing world-writable (the build checks it); what Nextflow writes goes to /tmp.
        assert "a+rwX" not in text and "o+w" not in text
        assert "chmod -R a+rX,go-w /.nextflow /pipeline" in text
        assert "mkdir -p /.nextflow/tmp/ver" in text  # the launcher's mkdir of it must not fail at run time
        assert 'test -z "$(find /.nextflow /pipeline -perm -0002 -print -quit)"' in text
        for var in ("NXF_LAUNCHER=/tmp/", "NXF_PLUGINS_DIR=${NXF_PLUGINS_DIR}"):
            assert var in env, var
        assert arg_defaults(dockerfile)["NXF_PLUGINS_DIR"].startswith("/tmp/")
    else:
        installs = " ".join(arg for k, arg in final if k == "RUN" and "apt-get install" in arg)
        for package in ("bash", "procps"):
            assert re.search(rf"\b{package}\b", installs), f"{package} not installed in the runtime stage"


def test_gdal_tools_lists_agree():
    # One list of tools, written in four places: both stages' TOOLS, the image description, and the loop
    # of scripts/container-check that builds and runs them.
    dockerfile = CONTAINERS / "gdal-tools" / "Dockerfile"
    declared = [arg.partition("=")[2].strip('"').split() for k, arg in instructions(dockerfile)
                if k == "ARG" and arg.startswith("TOOLS=")]
    assert len(declared) == 2 and declared[0] == declared[1], declared
    tools = declared[0]
    assert {"aoi-select", "cube-extract", "cube-inventory", "mosaic"} <= set(tools)
    description = re.search(r'org\.opencontainers\.image\.description="([^"]*)"', dockerfile.read_text()).group(1)
    assert re.findall(r"[a-z]+(?:-[a-z]+)+|assess|mosaic", description.split("(")[0]) == tools, description
    check = (ROOT / "scripts/container-check").read_text()
    assert re.search(r"^for t in (.*); do\n  \[ -d \"bins/\$t\" \]", check, re.M).group(1).split() == tools
    # BUILD_MODE=prebuilt copies target/release/<tool>: the build context must let each one through.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    missing = [t for t in tools + ["predict"] if f"!target/release/{t}" not in ignore]
    assert not missing, f".dockerignore keeps out {missing}"


def test_predict_images_point_ort_at_the_wheel_library():
    for image in ("predict-cpu", "predict-cuda"):
        final = stages(CONTAINERS / image / "Dockerfile")[-1][1]
        env = " ".join(arg for k, arg in final if k == "ENV")
        assert "ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so" in env, image
        runs = " ".join(arg for k, arg in final if k == "RUN")
        assert "libgdal" not in runs, f"{image}: predict must not pull in GDAL"


def test_build_script_passes_exactly_the_declared_pins():
    pins = read_versions()
    run = subprocess.run(
        [str(CONTAINERS / "build"), "--dry-run"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    lines = run.stdout.strip().splitlines()
    assert len(lines) == len(IMAGES)
    for line in lines:
        image = re.search(r"containers/([a-z-]+)/Dockerfile", line).group(1)
        passed = dict(re.findall(r"--build-arg ([A-Z_][A-Z0-9_]*)=(\S+)", line))
        declared = {a.partition("=")[0] for k, a in instructions(CONTAINERS / image / "Dockerfile") if k == "ARG"}
        expected = {k: v for k, v in pins.items() if k in declared}
        assert {k: v for k, v in passed.items() if k in pins} == expected, image
        assert f"-t localhost/treesits/treesits-{image}:" in line


def test_downloaded_wheels_are_checked_against_pinned_hashes():
    # Every pip download in every Dockerfile goes through a requirements line with the sha256 pinned in
    # versions.env, and pip refuses anything else (--require-hashes).
    pins = read_versions()
    seen = set()
    for dockerfile in DOCKERFILES:
        for keyword, arg in instructions(dockerfile):
            if keyword != "RUN" or not re.search(r"\bpip (download|install)\b", arg):
                continue
            assert "pip install" not in arg, f"{dockerfile.relative_to(ROOT)}: pip install in an image"
            for command in re.findall(r"pip download[^&;]*", arg):
                assert "--require-hashes" in command and "-r /tmp/ort-requirements.txt" in command, command
            (package, version_arg, hash_arg) = re.search(
                r"printf '([a-z-]+)==%s --hash=sha256:%s\\n' \"\$\{([A-Z_]+)\}\" \"\$\{([A-Z0-9_]+)\}\"", arg).groups()
            defaults = arg_defaults(dockerfile)
            assert defaults[version_arg] == pins[version_arg] and defaults[hash_arg] == pins[hash_arg]
            seen.add((package, pins[version_arg], pins[hash_arg]))
    assert {p for p, _, _ in seen} == {"onnxruntime", "onnxruntime-gpu"}
    assert len({h for _, _, h in seen}) == 2
