"""tools/setup_env.sh: what it would install (dry run), keeping a user's torch, and its refusals."""
import os
import shutil
import subprocess

import pytest

SCRIPT = "tools/setup_env.sh"


def setup(*args, **env):
    return subprocess.run(["bash", SCRIPT, "--dry-run", "--no-datasets", *args], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)


def planned(result):
    return [line.split("would run: ", 1)[1] for line in result.stdout.splitlines() if "would run: " in line]


def test_default_installs_the_pinned_torch_and_locks_the_rest():
    r = setup()
    assert r.returncode == 0, r.stderr
    commands = planned(r)
    assert any("torch==2.14.1" in c and "torchvision==0.29.1" in c and "torch-constraints.txt" in c for c in commands)
    assert any("requirements/base.txt" in c and "-c" in c and "constraints.txt" in c for c in commands)
    assert "NVIDIA driver >= 580" in r.stdout


def test_keep_torch_leaves_the_environments_torch_alone():
    r = setup("--keep-torch")
    assert r.returncode == 0, r.stderr
    assert "found torch 2.14.1" in r.stdout
    assert not [c for c in planned(r) if "torch==" in c or "torchvision==" in c]


def test_keep_torch_without_a_working_torch_is_refused(tmp_path):
    r = setup("--keep-torch", VENV=str(tmp_path / "fresh"))
    assert r.returncode == 1 and "no working torch >= 2.3" in r.stderr and "FAILED at step: keep" in r.stderr


def test_own_torch_index():
    r = setup("--torch-index-url", "https://download.pytorch.org/whl/cu126", "--torch", "2.9.1", "--torchvision",
              "0.24.1")
    assert r.returncode == 0, r.stderr
    assert any("--index-url https://download.pytorch.org/whl/cu126 torch==2.9.1 torchvision==0.24.1" in c
               for c in planned(r))
    both = setup("--keep-torch", "--torch-index-url", "x")
    assert both.returncode == 2 and "exclude each other" in both.stderr


def _other_python():
    """A working interpreter that is not 3.11, if the machine has one (pyenv shims may not run)."""
    import glob

    for candidate in ["python3.12", "python3.10", "python3.13"] + sorted(glob.glob("/root/.pyenv/versions/3.1[02]*/bin/python3")):
        path = shutil.which(candidate) or candidate
        try:
            if subprocess.run([path, "--version"], capture_output=True, timeout=20).returncode == 0:
                return path
        except OSError:
            continue
    return None


OTHER_PYTHON = _other_python()


@pytest.mark.skipif(OTHER_PYTHON is None, reason="no Python other than 3.11 runs on this machine")
def test_another_python_is_refused_before_any_download(tmp_path):
    r = setup(PYTHON=OTHER_PYTHON, VENV=str(tmp_path / "v"))
    assert r.returncode == 1 and "tested on Python 3.11" in r.stderr and not planned(r)


def test_requirements_and_package_metadata_agree():
    """setup.py's run-time requirements are the pinned ones (by name), torch apart."""
    import re

    pins = {}
    for name in ("base.txt", "test.txt", "torch.txt"):
        for line in open(f"requirements/{name}"):
            m = re.match(r"^([A-Za-z0-9_.-]+)==", line)
            if m:
                pins[m.group(1).lower()] = name
    text = open("setup.py").read()
    declared = {m.lower() for m in re.findall(r'"([A-Za-z0-9_.-]+)[<>=!~]', text)}
    runtime = {n for n, f in pins.items() if f in ("base.txt", "torch.txt")}
    assert runtime <= declared, runtime - declared
    assert {"onnx", "onnxruntime", "faster-coco-eval"} <= declared  # extras
    locked = {re.match(r"^([A-Za-z0-9_.-]+)==", l).group(1).lower() for l in open("requirements/constraints.txt")
              if re.match(r"^[A-Za-z0-9_.-]+==", l)}
    assert (set(pins) - {"torch", "torchvision", "setuptools"}) <= locked
