"""The set-up as a user meets it: the Makefile's interpreter check and venv stamp, its Docker targets,
.dockerignore, requirements.txt against the imports, bench/fetch_gpu_wheels.sh.

Every run here works on a copy of the Makefile in a temporary folder, with fake interpreters (shell
scripts that print a version or an identity) and a fake `docker` that logs its arguments: nothing
is installed and no container is started."""
import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

# Variables of the caller's environment that the Makefile reads (the Docker image sets FSAT_VENV; a
# `make test` run passes MAKEFLAGS down): none of them may leak into these runs.
MAKE_ENV = {"FSAT_VENV", "FSAT_DATA_DIR", "VENV", "PYTHON", "TORCH", "DATA", "CMD", "IMAGE", "GPUS",
            "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV}
    env.update(extra)
    return env


@pytest.fixture
def repo(tmp_path):
    """A folder with the repo's Makefile and requirements.txt (the stamp's prerequisite)."""
    d = tmp_path / "repo"
    d.mkdir()
    shutil.copy(ROOT / "Makefile", d)
    shutil.copy(ROOT / "requirements.txt", d)
    return d


def make(repo, *args, env=None):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=repo, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60)


def script(path, body):
    """An executable shell script; its calls are appended to calls.log beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> "$(dirname "$0")/calls.log"\n{body}\n')
    path.chmod(0o755)
    return path


def calls(folder):
    log = folder / "calls.log"
    return log.read_text() if log.exists() else ""


def fake_venv(folder, identity, stamp):
    """A venv folder whose interpreter prints `identity` whatever it is asked, and its stamp."""
    script(folder / "bin" / "python", f'echo "{identity}"')
    (folder / ".installed").write_text(stamp)
    os.utime(folder / ".installed", (2e9, 2e9))  # newer than requirements.txt: nothing to reinstall
    return folder


ID = "/usr/local 3.11 x86_64"


# ----------------------------------------------------------------------------- interpreter version

def test_wrong_python_version_stops_with_the_way_to_pick_another(repo):
    fake = script(repo / "fake" / "python3", "echo 3.10")
    r = make(repo, "demo", f"PYTHON={fake}")
    assert r.returncode != 0
    assert f"make: error: {fake} is Python 3.10; the pinned requirements need Python 3.11: " \
           "make demo PYTHON=python3.11" in r.stderr
    assert "-m venv" not in calls(fake.parent)   # stopped before making anything
    assert not (repo / ".venv").exists()


def test_missing_python_is_a_clear_error(repo):
    r = make(repo, "test", "PYTHON=no-such-python3.11")
    assert r.returncode != 0
    assert "make: error: cannot run 'no-such-python3.11'; install Python 3.11 and pick it with: " \
           "make test PYTHON=python3.11" in r.stderr


def test_supported_python_goes_on_to_make_the_venv(repo):
    fake = script(repo / "fake" / "python3", "echo 3.11")
    r = make(repo, "venv", f"PYTHON={fake}")
    # The fake made no venv, so the next step fails; what matters is that the check let it through.
    assert f"{fake} -m venv .venv" in calls(fake.parent)
    assert "make: error" not in r.stderr


def test_left_over_venv_of_another_version_is_named(repo):
    # A first try with python3 = 3.10 left .venv behind (pip failed on the pins, no stamp).
    script(repo / ".venv" / "bin" / "python", "echo 3.10")
    good = script(repo / "fake" / "python3.11", "echo 3.11")
    r = make(repo, "demo", f"PYTHON={good}")
    assert r.returncode != 0
    assert "make: error: .venv holds Python 3.10, not 3.11: remove it (rm -rf .venv), " \
           "then make demo PYTHON=python3.11" in r.stderr
    assert "-m pip" not in calls(repo / ".venv" / "bin")


# ----------------------------------------------------------------------------- whose venv it is

def test_venv_made_elsewhere_whose_interpreter_is_missing_is_refused(repo):
    # The host's .venv seen from a container: its bin/python links to an interpreter absent there.
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to("/nonexistent/bin/python3.11")
    (repo / ".venv" / ".installed").write_text("/nonexistent 3.11 x86_64\n")
    r = make(repo, "test")
    assert r.returncode != 0
    assert "make: error: .venv cannot be used here: its interpreter .venv/bin/python does not run " \
           "here. Remove it (rm -rf .venv)" in r.stderr
    assert "pytest" not in r.stdout


def test_venv_made_by_another_interpreter_is_refused(repo):
    fake_venv(repo / ".venv", identity=ID, stamp="/root/.pyenv/versions/3.11.7 3.11 x86_64\n")
    r = make(repo, "test")
    assert r.returncode != 0
    assert "it was made by Python [/root/.pyenv/versions/3.11.7 3.11 x86_64] and runs here as " \
           f"[{ID}]" in r.stderr
    assert "-m pytest" not in calls(repo / ".venv" / "bin")


def test_venv_made_by_this_interpreter_is_used(repo):
    fake_venv(repo / ".venv", identity=ID, stamp=ID + "\n")
    r = make(repo, "-n", "test")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ".venv/bin/python -m pytest -q --durations=15 tests"   # no reinstall, no refusal


def test_venv_stamped_by_an_older_makefile_is_used_when_it_runs(repo):
    fake_venv(repo / ".venv", identity=ID, stamp="")
    r = make(repo, "-n", "test")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ".venv/bin/python -m pytest -q --durations=15 tests"


def test_stamp_records_the_interpreter_the_check_compares(repo):
    r = make(repo, "-n", "venv")
    last = r.stdout.strip().splitlines()[-1]
    assert last.endswith("> .venv/.installed")
    # The recorded line is what a real interpreter prints for the command the check runs.
    code = re.search(r"-c '(.*)' >", last).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == "%d.%d" % sys.version_info[:2] and out.split()[0] == sys.base_prefix


def test_container_venv_is_taken_from_FSAT_VENV_not_the_mounted_host_venv(repo, tmp_path):
    # The repo (mounted at /workdir) carries a host .venv that cannot run in the container...
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to("/nonexistent/bin/python3.11")
    (repo / ".venv" / ".installed").write_text("/home/me/.pyenv/versions/3.11.9 3.11 x86_64\n")
    # ...and the image has its own venv, named by FSAT_VENV as the Dockerfile sets it.
    image_venv = fake_venv(tmp_path / "opt" / "venv", identity=ID, stamp=ID + "\n")
    r = make(repo, "-n", "test", env=clean_env(FSAT_VENV=str(image_venv)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{image_venv}/bin/python -m pytest -q --durations=15 tests"


def test_dockerfile_makes_its_venv_with_the_makefile_at_FSAT_VENV():
    text = (ROOT / "Dockerfile").read_text()
    env = re.search(r"^ENV FSAT_VENV=(\S+)$", text, re.M)
    assert env, "the image must name its venv for the Makefile"
    run = re.search(r"^RUN .*make -C (\S+) venv\b", text, re.M)
    assert run, "the image's venv must be made by the Makefile's venv target (same stamp)"
    assert env.start() < run.start()                        # so the venv target makes it there
    assert re.search(rf"^ENV PATH={env.group(1)}/bin:\$PATH$", text, re.M)


# ----------------------------------------------------------------------------- torch's wheel

def test_cpu_torch_comes_from_pytorchs_cpu_index_before_the_requirements(repo):
    lines = make(repo, "-n", "venv", "TORCH=cpu").stdout.splitlines()
    torch = [i for i, l in enumerate(lines) if "--index-url https://download.pytorch.org/whl/cpu" in l]
    reqs = [i for i, l in enumerate(lines) if "-r requirements.txt" in l]
    assert len(torch) == 1 and len(reqs) == 1 and torch[0] < reqs[0]
    pin = next(l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("torch=="))
    assert f"pip install --quiet {pin} --index-url" in lines[torch[0]]


def test_default_install_is_requirements_txt_as_it_is(repo):
    out = make(repo, "-n", "venv").stdout
    assert "--index-url" not in out and "-m pip install --quiet -r requirements.txt" in out


# ----------------------------------------------------------------------------- docker targets

@pytest.fixture
def docker(tmp_path):
    """A fake `docker` first on PATH; returns the folder whose calls.log holds its arguments."""
    bin_dir = tmp_path / "bin"
    script(bin_dir / "docker", "exit 0")
    return bin_dir


def docker_args(repo, docker, *args, **env):
    r = make(repo, *args, env=clean_env(PATH=f"{docker}:{os.environ['PATH']}", **env))
    return r, calls(docker).strip()


def test_run_mounts_the_data_folder_and_passes_FSAT_DATA_DIR_as_the_calling_user(repo, docker, tmp_path):
    data = tmp_path / "kaggle data"
    data.mkdir()
    r, argv = docker_args(repo, docker, "run", f"DATA={data}")
    assert r.returncode == 0, r.stderr
    assert f"--user {os.getuid()}:{os.getgid()}" in argv
    assert f"-v {repo}:/workdir -w /workdir" in argv
    assert f"-v {data}:/data -e FSAT_DATA_DIR=/data" in argv
    assert argv.endswith("--gpus all freesound-audio-tagging-2019 bash")


def test_run_takes_the_hosts_FSAT_DATA_DIR_and_a_relative_DATA(repo, docker, tmp_path):
    (repo / "data" / "demo").mkdir(parents=True)
    _, argv = docker_args(repo, docker, "run-cpu", FSAT_DATA_DIR=str(tmp_path))
    assert f"-v {tmp_path}:/data -e FSAT_DATA_DIR=/data" in argv
    (docker / "calls.log").unlink()
    _, argv = docker_args(repo, docker, "run-cpu", "DATA=data/demo", "CMD=make test")
    assert f"-v {repo}/data/demo:/data" in argv
    assert "--gpus" not in argv and argv.endswith("freesound-audio-tagging-2019-cpu make test")


def test_run_without_data_mounts_only_the_repo(repo, docker):
    _, argv = docker_args(repo, docker, "run")
    assert ":/data" not in argv and "FSAT_DATA_DIR" not in argv


def test_run_with_a_missing_data_folder_stops_before_docker(repo, docker):
    r, argv = docker_args(repo, docker, "run", "DATA=/nonexistent/kaggle")
    assert r.returncode != 0
    assert "make: error: DATA=/nonexistent/kaggle is not a folder" in r.stderr
    assert argv == ""


def test_build_cpu_passes_the_cpu_torch_build_arg(repo, docker):
    _, argv = docker_args(repo, docker, "build-cpu")
    assert argv.endswith("build --build-arg TORCH=cpu -t freesound-audio-tagging-2019-cpu .")
    assert re.search(r"^ARG TORCH=$", (ROOT / "Dockerfile").read_text(), re.M)


# ----------------------------------------------------------------------------- .dockerignore

def dockerignore_excludes(patterns, path):
    """Docker's rule: the last pattern matching the path or one of its parent folders decides;
    `*` stays within one path segment, `**` crosses them, `!` re-includes."""
    def regex(p):
        out = ""
        for part in re.split(r"(\*\*|\*|\?)", p):
            out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return re.compile(out + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for p in patterns:
        negate = p.startswith("!")
        rx = regex(p.lstrip("!").strip("/"))
        if any(rx.match(q) for q in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_data_and_venvs_out_and_what_the_image_copies_in():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [l.strip() for l in lines if l.strip() and not l.startswith("#")]
    for path in ["data/train_curated/0006ae4e.wav", "data/demo/DATASET.json", ".venv/bin/python",
                 ".venv/.installed", ".git/HEAD", ".whl/soxr.whl", "src/__init__.py"]:
        assert dockerignore_excludes(patterns, path), path
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    sources = [s for line in copied for s in line.split()]
    assert sources
    for path in sources:
        assert not dockerignore_excludes(patterns, path), f"the Dockerfile copies {path}"


def test_dockerignore_matcher_follows_dockers_rules():
    assert dockerignore_excludes(["data"], "data/x.wav")
    assert not dockerignore_excludes(["*.wav"], "data/x.wav")          # * within one segment
    assert dockerignore_excludes(["**/*.wav"], "data/x.wav")
    assert not dockerignore_excludes(["*", "!Makefile"], "Makefile")
    assert dockerignore_excludes(["!Makefile", "*"], "Makefile")       # the last match decides


# ----------------------------------------------------------------------------- requirements.txt

OPTIONAL = {"sounddevice"}   # live microphone only, imported on use with an install hint


def imported_top_level_names():
    names = set()
    skip = {".venv", "data", ".git", ".whl", ".gl"}
    for path in ROOT.rglob("*.py"):
        if skip & set(path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_directly_imported_package_is_pinned():
    local = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if p.is_dir()}
    local |= {p.stem for p in (ROOT / "bench").rglob("*.py")}       # bench scripts import each other
    third_party = imported_top_level_names() - set(sys.stdlib_module_names) - local - OPTIONAL
    third_party -= {"__future__"}
    assert {"torch", "soxr", "argus"} <= third_party                 # the scan sees the imports
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line} is not pinned with =="
            pinned[norm(name)] = version
    dists = importlib.metadata.packages_distributions()
    missing = {m: dists.get(m) for m in third_party
               if not any(norm(d) in pinned for d in dists.get(m, [m]))}
    assert not missing, f"imported but not pinned in requirements.txt: {missing}"


# ----------------------------------------------------------------------------- fetch_gpu_wheels.sh

@pytest.fixture
def wheels_checkout(tmp_path):
    """A copy of the script with its wheel list, and a fake python3 first on PATH."""
    bench = tmp_path / "checkout" / "bench"
    bench.mkdir(parents=True)
    for name in ["fetch_gpu_wheels.sh", "gpu_wheels.txt"]:
        shutil.copy(ROOT / "bench" / name, bench)
    fake = script(tmp_path / "bin" / "python3", "exit 0")
    return bench, fake.parent


def fetch(bench, fake_bin, *args):
    return subprocess.run(["bash", str(bench / "fetch_gpu_wheels.sh"), *args], capture_output=True, text=True,
                          env=clean_env(PATH=f"{fake_bin}:{os.environ['PATH']}"), timeout=60)


def test_fetch_gpu_wheels_takes_the_target_python_version(wheels_checkout):
    bench, fake_bin = wheels_checkout
    assert fetch(bench, fake_bin, "3.11").returncode == 0
    argv = calls(fake_bin)
    assert "-m pip download --no-deps --only-binary=:all: --python-version 3.11 " in argv
    assert "soxr==" in argv and "librosa==" in argv
    (fake_bin / "calls.log").unlink()
    assert fetch(bench, fake_bin).returncode == 0
    assert "--python-version 3.12 " in calls(fake_bin)            # the GPU check's image


def test_fetch_gpu_wheels_refuses_a_malformed_version_and_says_what_it_is_for(wheels_checkout):
    bench, fake_bin = wheels_checkout
    r = fetch(bench, fake_bin, "python3.11")
    assert r.returncode == 2 and calls(fake_bin) == ""
    assert r.stderr.strip() == ("fetch_gpu_wheels.sh: error: the target Python version must be X.Y "
                                "(e.g. 3.11), not 'python3.11'")
    help_text = fetch(bench, fake_bin, "--help").stdout
    assert "Prepares wheels for a bare GPU image" in help_text and "[PYTHON_VERSION]" in help_text
