"""What tools/setup_env.sh installs into an environment: read by the set-up and the tests.

declared() reads setup.py's requirement ranges (REQUIRES, EXTRAS) without running setup(),
so setup.py stays the one place the ranges are written.
"""
import ast
import re


def normalize(name):
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
