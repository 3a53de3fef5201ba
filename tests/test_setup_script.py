"""tools/setup_env.sh: what it would install (dry run), keeping a user's torch, and its refusals."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import tool_module

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "tools/setup_env.sh")
NO_VENV_YET = "/nonexistent/rgs_detectron-venv"  # the project's .venv of a fresh clone: nothing to inspect yet


def setup(*args, **env):
    """A dry run; the project's .venv is VENV (default: none made yet, as in a fresh clone), not this checkout's."""
    return subprocess.run(["bash", SCRIPT, "--dry-run", "--no-datasets", *args], capture_output=True, text=True,
                          env=dict(os.environ, **{"VENV": NO_VENV_YET, **env}), timeout=300)


def planned(result):
    return [line.split("would run: ", 1)[1] for line in result.stdout.splitlines() if "would run: " in line]


def test_default_installs_the_pinned_torch_and_locks_the_rest():
    r = setup()
    assert r.returncode == 0, r.stderr
    commands = planned(r)
    lock = f"-c {ROOT}/requirements/constraints.txt -c {ROOT}/requirements/torch-constraints.txt"
    assert any("torch==2.14.1 torchvision==0.29.1 " + lock in c for c in commands)
    assert any(c.endswith("/pinned.txt " + lock) for c in commands)  # the plan's pins, under the same lock
    assert "install numpy: tested 2.4.6" in r.stdout and "install pytest-xdist: tested 3.8.0" in r.stdout
    assert "NVIDIA driver >= 580" in r.stdout


def test_keep_torch_leaves_the_environments_torch_alone(tmp_path):
    python = fake_env(tmp_path, files=WORKING_TORCH)  # not the tested 2.14.1: the environment's own is reported
    r = setup("--keep-torch", VENV=str(Path(python).parents[1]))
    assert r.returncode == 0, r.stderr
    assert "found torch 2.9.1, torchvision 0.24.1: kept" in r.stdout
    assert not [c for c in planned(r) if "torch==" in c or "torchvision==" in c]


def test_keep_torch_without_a_working_torch_is_refused(tmp_path):
    r = setup("--keep-torch", VENV=str(tmp_path / "fresh"))
    assert r.returncode == 1 and "no working torch >= 2.3" in r.stderr and "FAILED at step: keep" in r.stderr


def test_own_torch_index():
    r = setup("--torch-index-url", "https://download.pytorch.org/whl/cu126", "--torch", "2.9.1", "--torchvision",
              "0.24.1")
    assert r.returncode == 0, r.stderr
    assert any(
        "--index-url https://download.pytorch.org/whl/cu126 torch==2.9.1 torchvision==0.24.1" in c for c in planned(r))
    both = setup("--keep-torch", "--torch-index-url", "x")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def _python(version):
    """A working interpreter of this version, if the machine has one (pyenv shims may not run)."""
    import glob

    for candidate in [f"python{version}", *sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))]:
        path = shutil.which(candidate) or candidate
        try:
            if subprocess.run([path, "--version"], capture_output=True, timeout=20).returncode == 0:
                return path
        except OSError:
            continue
    return None


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_python_3_12_and_3_13_are_accepted(version, tmp_path):
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} runs on this machine")
    r = setup(PYTHON=python, VENV=str(tmp_path / "v"))
    assert r.returncode == 0, r.stderr
    assert f"Python {version}: tested; CI runs the whole suite on it with " in r.stdout
    assert planned(r)[0] == f"{python} -m venv {tmp_path / 'v'}"


@pytest.mark.parametrize("version", ["3.10"])
def test_another_python_is_refused_before_any_download(version, tmp_path):
    python = _python(version)
    if python is None:
        pytest.skip(f"no Python {version} runs on this machine")
    r = setup(PYTHON=python, VENV=str(tmp_path / "v"))
    assert r.returncode == 1 and f"Python {version} found; rgs_detectron supports Python 3.11-3.13" in r.stderr
    assert not planned(r)


def _pins(*files):
    import re

    pins = {}
    for name in files:
        for line in open(ROOT / "requirements" / name):
            m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
            if m:
                pins[m.group(1)] = m.group(2)
    return pins


def test_setup_py_ranges_admit_the_tested_pins():
    """setup.py says what the code needs (ranges); every pin the set-up installs lies inside them."""
    from packaging.requirements import Requirement

    env_plan = tool_module("env_plan")
    requires, extras = env_plan.declared(str(ROOT / "setup.py"))
    ranges = {}
    for text in requires + [r for group in extras.values() for r in group]:
        req = Requirement(text)
        ranges.setdefault(env_plan.normalize(req.name), []).append(req.specifier)
    for name, version in _pins("base.txt", "test.txt", "torch.txt").items():
        assert env_plan.normalize(name) in ranges, f"{name} is pinned but not declared in setup.py"
        for specifier in ranges[env_plan.normalize(name)]:
            assert specifier.contains(version), f"setup.py's {name}{specifier} excludes the tested {version}"
    locked = {env_plan.normalize(n): v for n, v in _pins("constraints.txt", "torch-constraints.txt").items()}
    for text in requires:  # every run-time requirement is locked at the version base.txt pins
        name = env_plan.normalize(Requirement(text).name)
        assert name in locked or name == "setuptools", f"{name} is not in the lock"


def _setup_arguments():
    """What setup.py passes to setuptools.setup (run with setup() recording instead of building)."""
    import runpy
    from unittest import mock

    import setuptools

    seen = {}
    with mock.patch.object(setuptools, "setup", lambda **kwargs: seen.update(kwargs)):
        runpy.run_path(str(ROOT / "setup.py"))
    return seen


def test_every_command_line_is_a_console_script_that_runs_its_main():
    """setup.py derives the console scripts from rgs_detectron/cli/ (they were a tuple written by hand beside it)."""
    import importlib

    scripts = dict(s.split("=") for s in _setup_arguments()["entry_points"]["console_scripts"])
    commands = sorted(p.stem for p in (ROOT / "rgs_detectron" / "cli").glob("*.py") if p.stem != "__init__")
    assert len(commands) >= 9 and sorted(scripts) == [f"rgs-{c.replace('_', '-')}" for c in commands]
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_the_supported_pythons_are_the_same_everywhere():
    """setup.py's PYTHONS is the one list; each other place that names the supported Pythons says the same."""
    (pythons, ) = tool_module("env_plan").literal(str(ROOT / "setup.py"), "PYTHONS")
    first, last = pythons[0], pythons[-1]
    kwargs = _setup_arguments()
    assert kwargs["python_requires"] == f">={first},<3.{int(last.split('.')[1]) + 1}"
    python3 = "Programming Language :: Python :: 3."
    assert [c.rsplit(" ", 1)[1] for c in kwargs["classifiers"] if c.startswith(python3)] == list(pythons)
    listed = ", ".join(pythons[:-1]) + f" or {last}"
    places = {
        "tools/setup_env.sh": [
            f"if v not in {pythons}:".replace("'", '"'), f"supports Python {first}-{last}",
            "Set PYTHON=" + ", ".join(f"python{v}" for v in pythons[:-1]) + f" or python{last}"
        ],
        "tools/check_lock.py": [f"default={list(pythons)}".replace("'", '"')],
        ".ci/run": [f"find_python {v})" for v in pythons[1:]],
    }
    for path, phrases in places.items():
        text = (ROOT / path).read_text()
        assert all(phrase in text for phrase in phrases), (path, [p for p in phrases if p not in text])
    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    assert f"needs Python {listed}," in " ".join(docs.split()) and f"Supported: {first}-{last}," in docs
    (needs_torch, ) = tool_module("env_plan").literal(str(ROOT / "rgs_detectron/export.py"), "PT2_NEEDS_TORCH")
    assert set(needs_torch) <= set(pythons)


def test_a_plain_pip_install_never_replaces_the_users_torch_or_opencv():
    """torch, torchvision and opencv are extras: pip would otherwise swap a user's build for PyPI's."""
    from packaging.requirements import Requirement

    requires, extras = tool_module("env_plan").declared(str(ROOT / "setup.py"))
    names = {Requirement(r).name for r in requires}
    assert not names & {"torch", "torchvision", "opencv-python", "opencv-python-headless"}
    assert {Requirement(r).name for r in extras["torch"]} == {"torch", "torchvision"}
    assert [Requirement(r).name for r in extras["opencv"]] == ["opencv-python-headless"]


# The Detectron2 wheel's metadata (issue: `pip check` failed in the project's own environment).
TOY_METADATA = """Metadata-Version: 2.1
Name: toy-d2
Version: 0.7.2
Requires-Python: >=3.8
Requires-Dist: Pillow>=7.1
Requires-Dist: numpy<2
Requires-Dist: dataclasses; python_version < "3.7"
Requires-Dist: black
Provides-Extra: dev
Requires-Dist: black==23.3.0; extra == "dev"
"""


def _write_wheel(path, files):
    """A wheel at ``path`` holding ``files`` ({name: bytes}, its dist-info included) and their RECORD."""
    import base64
    import hashlib
    import zipfile

    info = next(p.split("/")[0] for p in files if p.endswith(".dist-info/METADATA"))
    record = "".join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
                     f"{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in [*files.items(), (f"{info}/RECORD", record.encode())]:
            z.writestr(p, d)
    return path


def _toy_wheel(folder):
    """A tiny wheel shaped like sal-detectron2's: tagged cp310, numpy<2 and black required."""
    return _write_wheel(
        folder / "toy_d2-0.7.2-cp310-none-any.whl", {
            "toy_d2/__init__.py": b"__version__ = '0.7.2'\n", "toy_d2-0.7.2.dist-info/METADATA": TOY_METADATA.encode(),
            "toy_d2-0.7.2.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
            b"Tag: cp310-cp310-linux_x86_64\n"
        })


def _retag(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools/retag_wheel.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def test_retagged_wheel_says_what_is_true_and_stays_valid(tmp_path):
    import base64
    import csv
    import hashlib
    import io
    import zipfile

    r = _retag(_toy_wheel(tmp_path), tmp_path / "out", "--drop", "black", "--unpin", "numpy")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "toy_d2-0.7.2-py3-none-any.whl"
    assert r.stdout.strip() == str(out)
    with zipfile.ZipFile(out) as z:
        metadata = z.read("toy_d2-0.7.2.dist-info/METADATA").decode()
        requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist")]
        assert requires == [
            "Pillow>=7.1", "numpy", 'dataclasses; python_version < "3.7"', 'black==23.3.0; extra == "dev"'
        ]
        assert "Tag: py3-none-any" in z.read("toy_d2-0.7.2.dist-info/WHEEL").decode()
        assert "cp310" not in z.read("toy_d2-0.7.2.dist-info/WHEEL").decode()
        rows = list(csv.reader(io.StringIO(z.read("toy_d2-0.7.2.dist-info/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(z.namelist())
        for name, digest, size in rows:
            if not name.endswith("RECORD"):
                data = z.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(
                    hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)


def test_retagging_a_wheel_it_was_not_written_for_is_refused(tmp_path):
    r = _retag(_toy_wheel(tmp_path), tmp_path / "out", "--drop", "blak")
    assert r.returncode == 1 and "METADATA has no requirement on blak" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_pip_check_passes_with_the_rewritten_wheel_and_failed_with_the_original(tmp_path):
    """Real pip, no network: an environment with numpy 2 (its metadata only) and the toy Detectron2."""

    def environment(name):
        venv = tmp_path / name
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
        site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        for dist, version in (("numpy", "2.4.6"), ("pillow", "13.0.0")):
            info = Path(site) / f"{dist}-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        return venv / "bin" / "python"

    def pip(python, *args):  # without PYTHONPATH: only the environment's own distributions count
        return subprocess.run(
            [sys.executable, "-m", "pip", "--python",
             str(python), "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})

    original = _toy_wheel(tmp_path)
    copied = tmp_path / "toy_d2-0.7.2-py3-none-any.whl"  # what the set-up did before: a renamed copy
    shutil.copy(original, copied)
    before = environment("before")
    assert pip(before, "install", "--no-deps", "--no-index", copied).returncode == 0
    check = pip(before, "check")
    assert check.returncode == 1
    assert "toy-d2 0.7.2 requires black" in check.stdout and "has requirement numpy<2" in check.stdout

    rewritten = _retag(original, tmp_path / "out", "--drop", "black", "--unpin", "numpy").stdout.strip()
    after = environment("after")
    installed = pip(after, "install", "--no-deps", "--no-index", rewritten)
    assert installed.returncode == 0, installed.stderr
    check = pip(after, "check")
    assert check.returncode == 0 and "No broken requirements found" in check.stdout, check.stdout


def test_the_set_up_installs_the_rewritten_wheel():
    r = setup("--detectron2", "wheel")
    assert r.returncode == 0, r.stderr
    commands = planned(r)
    retag = [i for i, c in enumerate(commands) if "tools/retag_wheel.py" in c]
    install = [i for i, c in enumerate(commands) if "install --no-deps --force-reinstall" in c]
    assert retag and install and retag[0] < install[0]
    assert "--drop black --unpin numpy" in commands[retag[0]]
    assert commands[install[0]].endswith("retagged/sal_detectron2-0.7.2-py3-none-any.whl")


@pytest.mark.parametrize("option", ["--torch", "--torchvision", "--torch-index-url", "--detectron2"])
@pytest.mark.parametrize("form", ["last", "before another option", "empty ="])
def test_an_option_without_its_value_is_named(option, form):
    args = {"last": [option], "before another option": [option, "--no-venv"], "empty =": [option + "="]}[form]
    r = setup(*args)
    assert r.returncode == 2 and r.stderr.splitlines() == [r.stderr.strip()], r.stderr
    assert f"setup_env: {option} needs a value (e.g. {option} " in r.stderr and not planned(r)


@pytest.mark.parametrize("other", [["--torch", "2.9.1"], ["--torchvision", "0.24.1"], ["--torch-index-url", "x"]])
def test_keep_torch_with_a_torch_to_install_is_refused_naming_both(other):
    for args in (["--keep-torch", *other], [*other, "--keep-torch"]):
        r = setup(*args)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"--keep-torch and {other[0]} exclude each other" in r.stderr and not planned(r)


# tools/check_lock.py asks pip's resolver on each Python (network: run by hand, output in docs/INSTALL.md);
# here, its reading of the lock and of pip's report.
def test_the_lock_files_agree_with_each_other():
    check_lock = tool_module("check_lock")
    lock = check_lock.read_lock([f"{check_lock.ROOT}/{p}" for p in check_lock.REQUIREMENTS + check_lock.CONSTRAINTS])
    assert lock["numpy"] == "2.4.6" and lock["torch"] == "2.14.1" and lock["fvcore"] == "0.1.5.post20221221"
    assert len(lock) == 81


def test_a_package_locked_twice_differently_is_named(tmp_path):
    (tmp_path / "a.txt").write_text("numpy==2.4.6\n")
    (tmp_path / "b.txt").write_text("# comment\nNumPy==2.4.5  # other\n")
    with pytest.raises(ValueError, match=r"numpy is pinned to 2.4.6 in .*a.txt and 2.4.5 in .*b.txt"):
        tool_module("check_lock").read_lock([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])


def test_a_resolution_that_leaves_the_lock_is_reported():

    def item(name, version, url):
        return {"metadata": {"name": name, "version": version}, "download_info": {"url": url}}

    report = {
        "install": [
            item("numpy", "2.4.6", "https://x/numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl"),
            item("Pillow", "12.0.0", "https://x/pillow-12.0.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
            item("fvcore", "0.1.5.post20221221", "https://x/fvcore-0.1.5.post20221221.tar.gz#sha256=ab"),
            item("tomli", "2.0.1", "https://x/tomli-2.0.1-py3-none-any.whl")
        ]
    }
    lock = {"numpy": "2.4.6", "pillow": "13.0.0", "fvcore": "0.1.5.post20221221"}
    assert tool_module("check_lock").compare(report,
                                             lock) == ({"pillow": ("13.0.0", "12.0.0")}, ["tomli==2.0.1"], ["fvcore"])
    exact = {"install": report["install"][:1]}
    assert tool_module("check_lock").compare(exact, lock) == ({}, [], [])


# Into a user's own environment (--no-venv): what the set-up keeps, installs and refuses. Each
# environment is a real interpreter with pip and, as the test needs, distributions' metadata and
# small stand-in modules (a fake torch and Detectron2 cost nothing to import).
def fake_env(tmp_path, dists=(), files=None, with_project_venv=False, tools=("pip", )):
    """dists: (name, version, METADATA lines); files: {path under site-packages: text}; tools: the project's
    packages it sees besides (pip, and setuptools to build an editable install without build isolation)."""
    import sysconfig

    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True,
                       text=True, check=True).stdout.strip())
    # Not `import pip` (nor a find_spec of it): setuptools' distutils hack then hands later
    # imports of setuptools in this process the standard library's distutils, and they fail.
    project_site = Path(sysconfig.get_path("purelib"))
    assert (project_site / "pip").is_dir(), project_site
    if with_project_venv:  # everything the project's environment has: real torch and Detectron2
        (site / "project.pth").write_text(f"{project_site}\n")
    else:  # pip only
        (tmp_path / "pip-only").mkdir()
        for tool in tools:
            (tmp_path / "pip-only" / tool).symlink_to(project_site / tool)
        (site / "pip.pth").write_text(f"{tmp_path / 'pip-only'}\n")
    for name, version, *lines in dists:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *lines]
        (info / "METADATA").write_text("\n".join(metadata) + "\n")
        top = "detectron2" if "detectron2" in name else "cv2" if name.startswith("opencv") else name.replace("-", "_")
        (info / "top_level.txt").write_text(top + "\n")
    for path, text in (files or {}).items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    return str(python)


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory):
    """An environment with pip only, shared: dry runs and `make -n` leave it as it is."""
    return fake_env(tmp_path_factory.mktemp("bare"))


@pytest.fixture(scope="module")
def project_env(tmp_path_factory):
    """An environment that sees the project's packages (real torch and Detectron2), shared."""
    return fake_env(tmp_path_factory.mktemp("project"), with_project_venv=True)


FAKE_D2 = {"detectron2/__init__.py": "__version__ = '0.6'\n"}
WORKING_TORCH = {
    "torch/__init__.py": "__version__ = '2.9.1'\ndef zeros(*a): return None\n",
    "torchvision/__init__.py": "__version__ = '0.24.1'\nfrom . import ops\n",
    "torchvision/ops.py": "def nms(*a): return None\n"
}  # what the set-up's probe calls, no more


def test_user_env_missing_everything_gets_the_tested_versions_and_the_bundled_detectron2(bare_env):
    python = bare_env
    r = setup("--no-venv", "--with-tests", PYTHON=python)
    assert r.returncode == 0, r.stderr
    commands = planned(r)
    assert any(
        c.startswith(f"{python} -m pip") and "install torch==2.14.1 torchvision==0.29.1 -c" in c for c in commands)
    assert "install numpy: missing (tested 2.4.6)" in r.stdout and "install pytest: missing (tested 9.2.0)" in r.stdout
    assert any("retag_wheel.py" in c for c in commands)  # no Detectron2: the bundled one
    install = [c for c in commands if " install -e " in c]
    assert len(install) == 1 and install[0].split(" -e ")[1].startswith(f"{ROOT}[test,opencv] -c ")
    assert not any("requirements/base.txt" in c or "apt-get" in c for c in commands)  # ranges, no system packages


def test_user_env_keeps_what_is_inside_the_ranges_and_replaces_only_what_is_outside(tmp_path):
    python = fake_env(tmp_path, dists=[("numpy", "9.0"), ("setuptools", "84.2.1"), ("opencv-python", "4.9.0.80")],
                      files={"cv2/__init__.py": ""})
    r = setup("--no-venv", PYTHON=python)
    assert r.returncode == 0, r.stderr
    assert "keep    numpy 9.0: inside >=1.24" in r.stdout
    assert "replace setuptools 84.2.1: outside <82 (tested 80.9.0)" in r.stdout
    install = [c for c in planned(r) if " install -e " in c][0]
    assert f"{ROOT} -c " in install  # a cv2 is there: no opencv extra, the user's opencv-python stays alone
    # the constraints that install gets: tested versions only for what is missing or outside its range
    out = tmp_path / "constraints.txt"
    plan = subprocess.run([
        python, ROOT / "tools/env_plan.py", "plan", ROOT / "setup.py", out, ROOT / "requirements/base.txt",
        ROOT / "requirements/constraints.txt"
    ], capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    constrained = out.read_text().splitlines()
    assert "setuptools==80.9.0" in constrained and "pillow==13.0.0" in constrained
    assert not [c for c in constrained if c.startswith("numpy==")]


@pytest.mark.slow
def test_user_env_keeps_its_torch_and_detectron2(project_env):
    """The environment's own torch and Detectron2, whatever their versions (the matrix runs this on several)."""
    from importlib import metadata

    import torch
    import torchvision

    import detectron2

    python = project_env
    r = setup("--no-venv", PYTHON=python)
    assert r.returncode == 0, r.stderr
    assert f"found torch {torch.__version__}, torchvision {torchvision.__version__}: kept" in r.stdout
    (dist, ) = metadata.packages_distributions()["detectron2"]
    assert f"found Detectron2 {detectron2.__version__} ({dist})" in r.stdout
    lacks = tool_module("env_plan").lacking(torch.__version__, "%d.%d" % sys.version_info[:2])
    assert ("what rgs_detectron cannot do with it: " + "; ".join(lacks) in r.stdout) == bool(lacks)
    commands = planned(r)
    assert not [c for c in commands if "torch==" in c or "sal-detectron2" in c or "retag_wheel" in c]


def test_user_env_keeps_its_own_detectron2_unless_asked_and_then_replaces_it(tmp_path):
    python = fake_env(tmp_path, dists=[("detectron2", "0.6")], files=FAKE_D2)
    kept = setup("--no-venv", "--keep-torch", PYTHON=python)
    assert kept.returncode == 1 and "no working torch >= 2.3" in kept.stderr  # (no torch here)
    kept = setup("--no-venv", PYTHON=python)
    assert kept.returncode == 0, kept.stderr
    assert "found Detectron2 0.6 (detectron2)" in kept.stdout
    assert not [c for c in planned(kept) if "sal-detectron2" in c or "retag_wheel" in c or "uninstall" in c]
    replaced = setup("--no-venv", "--detectron2", "bundled", PYTHON=python)
    assert replaced.returncode == 0, replaced.stderr
    commands = planned(replaced)
    uninstall = [i for i, c in enumerate(commands) if c.endswith("uninstall -y detectron2")]
    install = [i for i, c in enumerate(commands) if "install --no-deps --force-reinstall" in c]
    assert uninstall and install and uninstall[0] < install[0]


def test_user_env_with_a_broken_detectron2_is_refused_not_replaced(tmp_path, bare_env):
    python = fake_env(tmp_path, dists=[("detectron2", "0.6")],
                      files={"detectron2/__init__.py": "raise OSError('libc10.so: cannot open shared object file')\n"})
    r = setup("--no-venv", PYTHON=python)
    assert r.returncode == 1 and not planned(r)  # refused before any step that installs (here torch would be)
    assert "does not import (OSError: libc10.so: cannot open shared object file)" in r.stderr
    assert "--detectron2 bundled or --detectron2 official" in r.stderr
    keep = setup("--no-venv", "--detectron2", "keep", PYTHON=bare_env)
    assert keep.returncode == 1 and "--detectron2 keep, but no Detectron2 imports" in keep.stderr


def test_user_env_with_an_unusable_torch_is_refused_not_replaced(tmp_path):
    python = fake_env(
        tmp_path, files={
            "torch/__init__.py": "__version__ = '2.1.0'\ndef zeros(*a): return None\n",
            "torchvision/__init__.py": "__version__ = '0.16.0'\nfrom . import ops\n",
            "torchvision/ops.py": "def nms(*a): return None\n"
        })
    r = setup("--no-venv", PYTHON=python)
    assert r.returncode == 1 and not [c for c in planned(r) if "torch==" in c]
    assert "has torch 2.1.0, torchvision 0.16.0, which rgs_detectron cannot use (need torch >= 2.3" in r.stderr
    replaced = setup("--no-venv", "--torch", "2.9.1", "--torchvision", "0.24.1", PYTHON=python)
    assert replaced.returncode == 0, replaced.stderr
    assert any(
        c.endswith("install torch==2.9.1 torchvision==0.24.1 -c " + c.rsplit(" ", 1)[1]) and
        c.endswith("/constraints.txt") for c in planned(replaced))  # the plan's constraints


def test_the_bundled_wheel_installed_with_its_old_metadata_is_refreshed(tmp_path):
    python = fake_env(tmp_path, dists=[("sal-detectron2", "0.7.2", "Requires-Dist: numpy<2", "Requires-Dist: black")],
                      files=FAKE_D2)
    r = setup("--no-venv", PYTHON=python)
    assert r.returncode == 0, r.stderr
    assert "is the bundled wheel with its old metadata" in r.stdout
    assert any("retag_wheel.py" in c for c in planned(r)) and not [c for c in planned(r) if "uninstall" in c]


def test_user_env_pinned_gets_the_exact_tested_versions(bare_env):
    python = bare_env
    r = setup("--no-venv", "--pinned", PYTHON=python)
    assert r.returncode == 0, r.stderr
    commands = planned(r)
    assert "install numpy: tested 2.4.6" in r.stdout and "install pytest" not in r.stdout  # without --with-tests
    assert any(
        c.endswith(f"/pinned.txt -c {ROOT}/requirements/constraints.txt -c {ROOT}/requirements/torch-constraints.txt")
        for c in commands)
    assert any(c.endswith(f"install --no-deps --no-build-isolation -e {ROOT}") for c in commands)


def test_pinned_shows_its_plan_and_never_puts_headless_opencv_beside_the_users(tmp_path):
    python = fake_env(tmp_path, dists=[("numpy", "9.0"), ("pillow", "13.0.0"), ("opencv-python", "4.9.0.80")],
                      files={"cv2/__init__.py": ""})
    r = setup("--no-venv", "--pinned", PYTHON=python)
    assert r.returncode == 0, r.stderr
    assert "replace numpy 9.0: tested 2.4.6" in r.stdout and "keep    pillow 13.0.0: the tested version" in r.stdout
    assert "keep    cv2 (opencv-python 4.9.0.80): opencv-python-headless is not installed beside it" in r.stdout
    out = tmp_path / "pinned.txt"  # what that install step gets: the plan's pins
    plan = subprocess.run(
        [python, ROOT / "tools/env_plan.py", "pinned", out, "--install", ROOT / "requirements/base.txt"],
        capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    pins = out.read_text().splitlines()
    assert "numpy==2.4.6" in pins and "pillow==13.0.0" in pins and not [p for p in pins if p.startswith("opencv")]


# make test / make demo: which Python runs them (`make -n` prints the commands without running them).
def make(*args, **env):
    clean = {
        k: v for k, v in os.environ.items()
        if k not in ("PYTHON", "VIRTUAL_ENV", "CONDA_PREFIX", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    return subprocess.run(["make", *args], capture_output=True, text=True, env=dict(clean, **env), timeout=120,
                          cwd=ROOT)


def test_make_test_runs_on_every_core_then_the_serial_cases_alone():
    """pytest-xdist on min(cores, 4) processes (JOBS=), then the cases marked serial in one process; both counted."""
    python = sys.executable
    r = make("-n", "test", f"PYTHON={python}", "JOBS=3")
    assert r.returncode == 0, r.stderr
    parallel, serial = r.stdout.splitlines()[-1].split("; a=$?; ")
    import importlib.util

    xdist = " -n 3" if importlib.util.find_spec("xdist") else ""  # without it, one process
    assert " ".join(parallel.split()) == f'{python} -m pytest tests -q -rs{xdist} -m "not serial"'
    assert serial.startswith(f'{python} -m pytest tests -q -rs -m "serial"; b=$?; [ $b -eq 5 ] && b=0')


def test_make_uses_the_checkouts_venv_by_default():
    r = make("-n", "test")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith(".venv/bin/python -m pytest tests -q -rs ")


def test_make_runs_with_the_python_it_is_given_and_sets_nothing_up(bare_env):
    python = sys.executable  # the project's environment: it has Detectron2
    for target, command in [("test", f"{python} -m pytest tests -q -rs "),
                            ("demo", f"{python} -m rgs_detectron.cli.digits_demo --output output/digits_demo")]:
        r = make("-n", target, f"PYTHON={python}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1].startswith(command) and "VENV=.venv bash tools/setup_env.sh" not in r.stdout
    bare = bare_env
    r = make("test", f"PYTHON={bare}")
    assert r.returncode == 2 and "pytest" not in r.stdout
    assert (f"make: PYTHON={bare} has no Detectron2; install into it with "
            f"'PYTHON={bare} bash tools/setup_env.sh --no-venv") in r.stderr


def test_make_uses_an_active_environment_that_has_detectron2(project_env, bare_env):
    with_d2 = Path(project_env).parents[1]
    r = make("-n", "demo", VIRTUAL_ENV=str(with_d2))
    assert r.stdout.splitlines(
    )[-1] == f"{with_d2}/bin/python -m rgs_detectron.cli.digits_demo --output output/digits_demo"
    assert "VENV=.venv bash tools/setup_env.sh" not in r.stdout
    without = Path(bare_env).parents[1]  # e.g. conda's base environment
    r = make("-n", "test", CONDA_PREFIX=str(without))
    assert r.stdout.splitlines()[-1].startswith(".venv/bin/python -m pytest tests -q -rs ")


def test_the_readmes_bibtex_and_citation_cff_cite_the_same_paper():
    import re

    import yaml

    cff = yaml.safe_load(open(ROOT / "CITATION.cff"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    paper = cff["preferred-citation"]
    bibtex = open(ROOT / "README.md").read().split("```bibtex\n", 1)[1].split("```", 1)[0]
    field = {k: " ".join(v.split()) for k, v in re.findall(r"(\w+)\s*=\s*\{(.*?)\},?\n", bibtex, re.S)}
    assert field["title"] == paper["title"] and int(field["year"]) == paper["year"]
    assert field["author"].split(" and ") == [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]]
    license_head = (ROOT / "LICENSE").read_text()[:200]
    assert "Apache License" in license_head and "Version 2.0, January 2004" in license_head


def _stand_in_wheel(folder, name, version, requires=(), files=None):
    """A tiny pure-Python wheel of ``name`` ``version`` that requires ``requires``; files: {path: text}."""
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    contents = {path: text.encode() for path, text in files.items()}
    contents[f"{name}-{version}.dist-info/METADATA"] = metadata.encode()
    contents[f"{name}-{version}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    _write_wheel(folder / f"{name}-{version}-py3-none-any.whl", contents)


@pytest.mark.slow
def test_the_set_up_installs_what_its_plan_says(tmp_path):
    """The real script and pip, no network: a stand-in project (setup.py needs numpy>=1.24, the lock pins numpy
    2.4.6) and a stand-in index holding numpy 2.4.6 and 2.5.5 and a torchvision that takes any numpy. The plan
    says numpy 2.4.6, and 2.4.6 is installed, torch's step included (torchvision alone would take 2.5.5)."""
    project = tmp_path / "project"
    for folder in ("tools", "requirements", "rgs_detectron"):
        (project / folder).mkdir(parents=True)
    for tool in ("setup_env.sh", "env_plan.py", "retag_wheel.py"):
        shutil.copy(ROOT / "tools" / tool, project / "tools" / tool)
    lock = {
        "base.txt": "numpy==2.4.6\n", "test.txt": "", "constraints.txt": "numpy==2.4.6\n",
        "torch.txt": "torch==2.14.1\ntorchvision==0.29.1\n", "torch-constraints.txt": ""
    }
    for name, text in lock.items():
        (project / "requirements" / name).write_text(text)
    (project / "setup.py").write_text(
        "from setuptools import setup\nREQUIRES = ['numpy>=1.24']\n"
        "EXTRAS = {'torch': ['torch>=2.3', 'torchvision>=0.18'], 'opencv': [], 'test': []}\n"
        "setup(name='rgs_detectron', version='0.2.0', packages=['rgs_detectron'], install_requires=REQUIRES,"
        " extras_require=EXTRAS)\n")
    (project / "rgs_detectron" / "__init__.py").write_text("__version__ = '0.2.0'\n")
    (project / "rgs_detectron" / "export.py").write_text("PT2_NEEDS_TORCH = {}\n")
    index = tmp_path / "index"
    index.mkdir()
    for version in ("2.4.6", "2.5.5"):
        _stand_in_wheel(index, "numpy", version, files={"numpy/__init__.py": f"__version__ = '{version}'\n"})
    _stand_in_wheel(
        index, "torch", "2.14.1", files={
            "torch/__init__.py": "__version__ = '2.14.1'\nclass cuda:\n    is_available = staticmethod(lambda: False)\n"
        })
    _stand_in_wheel(index, "torchvision", "0.29.1", ["numpy", "torch==2.14.1"],
                    files={"torchvision/__init__.py": "__version__ = '0.29.1'\n"})
    from importlib.metadata import version

    setuptools_version = version("setuptools")  # its dist-info too: setuptools finds its commands there
    tools = ("pip", "setuptools", "_distutils_hack", "pkg_resources", f"setuptools-{setuptools_version}.dist-info")
    python = fake_env(tmp_path, dists=[("detectron2", "0.6")], files=FAKE_D2, tools=tools)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PYTHON=python, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index),
               PIP_NO_BUILD_ISOLATION="0")
    r = subprocess.run(["bash", project / "tools/setup_env.sh", "--no-venv"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "    install numpy: missing (tested 2.4.6)" in r.stdout and "install torch==2.14.1" in r.stdout
    installed = subprocess.run([python, "-c", "import numpy, torch, torchvision; print(numpy.__version__)"],
                               capture_output=True, text=True, env=env)
    assert installed.stdout.strip() == "2.4.6", installed.stderr
