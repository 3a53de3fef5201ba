"""What tools/setup_env.sh finds in an environment and installs into it.

Run by the set-up with the target environment's own interpreter (so it sees that
environment's packages), standard library only apart from packaging, which pip carries:

    python tools/env_plan.py probe --min-torch 2.3            # torch, Detectron2, cv2: shell assignments
    python tools/env_plan.py plan setup.py OUT LOCK... [--extra NAME]
    python tools/env_plan.py pinned OUT --install REQUIREMENTS...

literal() reads setup.py's requirement ranges (REQUIRES, EXTRAS) and rgs_detectron/export.py's
PT2_NEEDS_TORCH without running them, so each stays the one place its facts are written.
"""
import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")  # a `name==version` line of a lock file


def normalize(name):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def literal(path, *names):
    """The values of the top-level assignments ``names`` in the Python file ``path``, read without running it."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in names:
                found[node.targets[0].id] = ast.literal_eval(node.value)
    if set(found) != set(names):
        raise ValueError(f"{path} does not assign {' and '.join(names)} as literals")
    return [found[n] for n in names]


def declared(setup_py):
    """(REQUIRES, EXTRAS) as written in setup.py: a list of requirement strings and a dict of them."""
    return tuple(literal(setup_py, "REQUIRES", "EXTRAS"))


def lacking(torch_version, python, export_py=os.path.join(ROOT, "rgs_detectron", "export.py")):
    """What rgs_detectron cannot do with this torch on this Python (``"3.12"``): a list of phrases."""
    _, Version = _packaging()
    (needs, ) = literal(export_py, "PT2_NEEDS_TORCH")
    if python in needs and Version(torch_version.split("+")[0]) < Version(needs[python]):
        return [
            f"export --format pt2-backbone and the predictor's and demo's compile option (torch.export and "
            f"torch.compile need torch >= {needs[python]} on Python {python})"
        ]
    return []


def _packaging():
    """packaging's Requirement and Version: the environment's own, else the copy inside pip."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import Version
    return Requirement, Version


def installed_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_pins(paths):
    """{normalized name: version} of the `name==version` lines of lock files."""
    pins = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                m = PIN.match(line.strip())
                if m:
                    pins[normalize(m.group(1))] = m.group(2)
    return pins


def plan(setup_py, constraints_out, locks, extras=()):
    """Print what a range install into this environment keeps, installs and replaces, and write
    the constraints that give what is missing its tested version.

    What is installed and inside setup.py's range is kept: it gets no constraint, so pip leaves
    it (its default upgrade strategy is only-if-needed). Everything else in the lock (missing,
    or outside the range) is constrained to its tested version."""
    Requirement, _ = _packaging()
    requires, all_extras = declared(setup_py)
    unknown = [e for e in extras if e not in all_extras]
    if unknown:
        raise ValueError(f"setup.py has no extra {', '.join(unknown)}")
    pins = read_pins(locks)
    outside = set()
    for text in requires + [r for e in extras for r in all_extras[e]]:
        req = Requirement(text)
        name, have = normalize(req.name), installed_version(req.name)
        tested = f"tested {pins[name]}" if name in pins else "no tested pin"
        if have is None:
            print(f"    install {req.name}: missing ({tested})")
        elif req.specifier.contains(have, prereleases=True):
            print(f"    keep    {req.name} {have}: inside {req.specifier or 'any version'}")
        else:
            outside.add(name)
            print(f"    replace {req.name} {have}: outside {req.specifier} ({tested})")
    constrained = {n: v for n, v in pins.items() if n in outside or installed_version(n) is None}
    with open(constraints_out, "w") as f:
        f.write("".join(f"{n}=={v}\n" for n, v in sorted(constrained.items())))
    print(f"    tested versions for what is missing or outside its range: {len(constrained)} of the lock's "
          f"{len(pins)} packages; the other {len(pins) - len(constrained)} are kept as installed")


def pinned(requirements_out, installs):
    """Print what an exact install keeps, installs and replaces, and write the pins it installs.

    Every `name==version` of the `installs` files gets that version, except opencv-python-headless
    where another distribution already provides cv2 (opencv-python, conda's opencv): both write the
    same cv2 package, each over the other's, so the one there is kept."""
    import importlib.util

    chosen = []
    for name, version in read_pins(installs).items():
        have = installed_version(name)
        if name == "opencv-python-headless" and have is None and importlib.util.find_spec("cv2"):
            print(f"    keep    cv2 ({_cv2_owner()}): opencv-python-headless is not installed beside it")
            continue
        chosen.append(f"{name}=={version}")
        if have == version:
            print(f"    keep    {name} {have}: the tested version")
        else:
            print(f"    {'install' if have is None else 'replace'} {name}" + (f" {have}" if have else "") +
                  f": tested {version}")
    with open(requirements_out, "w") as f:
        f.write("".join(line + "\n" for line in chosen))


def _cv2_owner():
    from importlib import metadata

    owners = metadata.packages_distributions().get("cv2", [])
    return ", ".join(f"{d} {installed_version(d)}" for d in owners) or "no pip metadata, e.g. conda's opencv"


def probe(min_torch):
    """Shell assignments describing this environment's torch, Detectron2 and cv2 (for `eval`)."""
    import importlib.util
    import shlex

    _, Version = _packaging()
    out = {}
    if importlib.util.find_spec("torch") is None:
        out["TORCH"] = "absent"
    else:
        try:
            import torch
            import torchvision

            torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # fails when the two builds do not match
            out["TORCH_FOUND"] = f"torch {torch.__version__}, torchvision {torchvision.__version__}"
            new_enough = Version(torch.__version__.split("+")[0]).release >= Version(min_torch).release
            out["TORCH"] = "fits" if new_enough else "old"
            out["TORCH_LACKS"] = "; ".join(lacking(torch.__version__, "%d.%d" % sys.version_info[:2]))
        except Exception as e:  # any failure means: not usable as it is
            out["TORCH"], out["TORCH_FOUND"] = "broken", f"{type(e).__name__}: {e}".splitlines()[0]
    spec = importlib.util.find_spec("detectron2")
    if spec is None:
        out["D2"] = "absent"
    else:
        from importlib import metadata

        dists = metadata.packages_distributions().get("detectron2", [])
        out["D2_DIST"] = dists[0] if dists else "a source tree"
        out["D2_WHERE"] = os.path.dirname(spec.origin or "") or str(list(spec.submodule_search_locations or []))
        if dists:  # the wheel bundled before its metadata was rewritten: same code, stale requirements
            requires = metadata.requires(dists[0]) or []
            out["D2_STALE"] = "1" if any(re.match(r"black\s*($|;)", r) for r in requires) else "0"
        try:
            import detectron2

            out["D2"], out["D2_VERSION"] = "imports", getattr(detectron2, "__version__", "?")
        except Exception as e:
            missing_torch = isinstance(e, ImportError) and getattr(e, "name", "") in ("torch", "torchvision")
            out["D2"] = "needs-torch" if missing_torch else "broken"
            out["D2_ERROR"] = f"{type(e).__name__}: {e}".splitlines()[0]
    out["CV2"] = "1" if importlib.util.find_spec("cv2") else "0"
    for key, value in out.items():
        print(f"{key}={shlex.quote(value)}")


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="print the plan of a range install and write its constraints")
    p.add_argument("setup_py")
    p.add_argument("constraints_out")
    p.add_argument("locks", nargs="+")
    p.add_argument("--extra", action="append", default=[])
    p = sub.add_parser("pinned", help="print the plan of an exact install and write the pins it installs")
    p.add_argument("requirements_out")
    p.add_argument("--install", nargs="+", required=True, help="the requirements files to install")
    p = sub.add_parser("probe", help="describe torch, Detectron2 and cv2 as shell assignments")
    p.add_argument("--min-torch", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            plan(args.setup_py, args.constraints_out, args.locks, args.extra)
        elif args.command == "pinned":
            pinned(args.requirements_out, args.install)
        else:
            probe(args.min_torch)
    except (OSError, ValueError) as e:
        sys.exit(f"env_plan: {e}")


if __name__ == "__main__":
    main()
