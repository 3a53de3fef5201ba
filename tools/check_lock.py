"""Does the lock resolve on each supported Python? Asks pip's resolver and installs nothing.

For each target Python (default: 3.11, 3.12, 3.13) this runs that interpreter's own pip:

    pythonX.Y -m pip install --dry-run --ignore-installed --report REPORT \\
        -r requirements/torch.txt -r requirements/base.txt -r requirements/test.txt \\
        -c requirements/constraints.txt -c requirements/torch-constraints.txt

so wheel tags, Requires-Python and environment markers are the target's own, not a
simulation. antlr4-python3-runtime, fvcore and iopath have no wheels at all (for any
Python): pip builds their sdists to read their dependencies, exactly as a real install on
that Python would, and the output names them. Then it checks that pip picked the locked
version of every package and nothing outside the lock.

    python tools/check_lock.py                      # 3.11 3.12 3.13
    python tools/check_lock.py 3.12 --python 3.12=/opt/py312/bin/python3

Needs the package index (network), so it is not part of the test suite; tests cover the
reading of the lock and of pip's report. Exit status 0 when every target resolves to the
lock, 1 otherwise (or when a target's interpreter is missing: pass --python VERSION=PATH).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from env_plan import PIN, normalize  # tools/ is this script's folder, first on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = ["requirements/torch.txt", "requirements/base.txt", "requirements/test.txt"]
CONSTRAINTS = ["requirements/constraints.txt", "requirements/torch-constraints.txt"]


def read_lock(paths):
    """{name: version} of every `name==version` line; a name pinned to two versions is an error."""
    lock, where = {}, {}
    for path in paths:
        with open(path) as f:
            for line in f:
                m = PIN.match(line.strip())
                if not m:
                    continue
                name, version = normalize(m.group(1)), m.group(2)
                if lock.get(name, version) != version:
                    raise ValueError(f"{name} is pinned to {lock[name]} in {where[name]} and {version} in {path}")
                lock[name], where[name] = version, path
    return lock


def compare(report, lock):
    """What pip's --report chose against the lock: (mismatches, outside the lock, built from sdists)."""
    chosen = {normalize(i["metadata"]["name"]): i for i in report["install"]}
    mismatched = {
        n: (lock[n], i["metadata"]["version"]) for n, i in chosen.items()
        if n in lock and i["metadata"]["version"] != lock[n]
    }
    outside = sorted(f"{n}=={i['metadata']['version']}" for n, i in chosen.items() if n not in lock)
    sdists = sorted(n for n, i in chosen.items() if not i["download_info"]["url"].split("#")[0].endswith(".whl"))
    return mismatched, outside, sdists


def find_python(version, given):
    """The interpreter for `version`: --python's, else pythonX.Y on PATH, else pyenv's."""
    candidates = [given[version]] if version in given else [
        f"python{version}", *sorted(
            glob.glob(
                os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions", f"{version}.*",
                             "bin", f"python{version}")), reverse=True)
    ]
    for candidate in candidates:
        path = shutil.which(candidate) or candidate
        try:
            out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=60)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return path
    return None


def check(version, python, lock):
    """One line (or a few) saying whether the lock resolves on `python`; True when it does."""
    pip_version = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()[1:2]
    head = f"Python {version} ({python}, pip {''.join(pip_version) or '?'})"
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "report.json")
        cmd = [
            python, "-m", "pip", "--disable-pip-version-check", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", report_path
        ]
        cmd += [a for r in REQUIREMENTS for a in ("-r", os.path.join(ROOT, r))]
        cmd += [a for c in CONSTRAINTS for a in ("-c", os.path.join(ROOT, c))]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "is ignored: it is neither" not in line]
            print(f"{head}: DOES NOT RESOLVE\n    " + "\n    ".join(errors[-15:]))
            return False
        with open(report_path) as f:
            report = json.load(f)
    mismatched, outside, sdists = compare(report, lock)
    count = len(report["install"])
    ok = not mismatched and not outside
    print(f"{head}: {'resolves' if ok else 'resolves, but NOT to the lock'}: {count} packages" +
          (", each at its locked version" if ok else ""))
    for name, (locked, got) in sorted(mismatched.items()):
        print(f"    {name}: pip picked {got}, the lock says {locked}")
    if outside:
        print(f"    not in the lock: {', '.join(outside)}")
    if sdists:
        print(f"    no wheel, built from source to read their dependencies: {', '.join(sdists)}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", default=["3.11", "3.12", "3.13"])
    parser.add_argument("--python", action="append", default=[], metavar="VERSION=PATH",
                        help="the interpreter to use for VERSION")
    args = parser.parse_args(argv)
    given = dict(p.split("=", 1) for p in args.python if "=" in p)
    if len(given) != len(args.python):
        parser.error("--python takes VERSION=PATH, e.g. --python 3.12=/usr/bin/python3.12")
    try:
        lock = read_lock([os.path.join(ROOT, p) for p in REQUIREMENTS + CONSTRAINTS])
    except (OSError, ValueError) as e:
        sys.exit(f"check_lock: {e}")
    print(f"The lock: {len(lock)} pinned packages ({', '.join(REQUIREMENTS + CONSTRAINTS)})")
    ok = True
    for version in args.versions:
        python = find_python(version, given)
        if python is None:
            print(f"Python {version}: NOT CHECKED: no working python{version} found; pass --python {version}=PATH")
            ok = False
        else:
            ok = check(version, python, lock) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
