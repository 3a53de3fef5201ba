"""What tools/setup_env.sh finds in an environment and installs into it.

Run by the set-up with the target environment's own interpreter (so it sees that
environment's packages), standard library only apart from packaging, which pip carries:

    python tools/env_plan.py probe --min-torch 2.3            # torch, Detectron2, cv2: shell assignments
    python tools/env_plan.py plan setup.py OUT LOCK... [--extra NAME]

declared() reads setup.py's requirement ranges (REQUIRES, EXTRAS) without running setup(),
so setup.py stays the one place the ranges are written.
"""
import ast
import os
import re
import sys

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")  # a `name==version` line of a lock file


def normalize(name):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(setup_py):
    """(REQUIRES, EXTRAS) as written in setup.py: a list of requirement strings and a dict of them."""
    with open(setup_py) as f:
        tree = ast.parse(f.read(), setup_py)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("REQUIRES", "EXTRAS"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    if set(found) != {"REQUIRES", "EXTRAS"}:
        raise ValueError(f"{setup_py} does not assign REQUIRES and EXTRAS as literals")
    return found["REQUIRES"], found["EXTRAS"]


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
    p = sub.add_parser("probe", help="describe torch, Detectron2 and cv2 as shell assignments")
    p.add_argument("--min-torch", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            plan(args.setup_py, args.constraints_out, args.locks, args.extra)
        else:
            probe(args.min_torch)
    except (OSError, ValueError) as e:
        sys.exit(f"env_plan: {e}")


if __name__ == "__main__":
    main()
