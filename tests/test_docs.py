"""The docs stand alone and say what the code does."""
import json
import re
import statistics
from pathlib import Path

import pytest

from rgs_detectron.modeling.variants import markdown_table

from common import doc_section

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", ["README.md", "docs/ARCHITECTURE.md"])
def test_variant_table_in_the_docs_is_the_code_table(doc):
    assert doc_section(doc, "variant-table") == markdown_table()


def test_every_linked_document_exists():
    """...in the repository: the docs stand alone, citing nothing beside the checkout."""
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not target.startswith("mailto:"):
                path = (doc.parent / target).resolve()
                assert path.exists(), f"{doc.name} links {target}"
                assert ROOT.resolve() in path.parents, f"{doc.name} links {target}, outside the repository"


def test_convert_docs_quote_what_the_tool_writes(tmp_path):
    """docs/CONVERT.md's example (b-RGS-26 at 0.25x) with the tensor count the converter writes."""
    import torch

    from rgs_detectron.checkpoint.convert import convert_checkpoint
    from rgs_detectron.classification import RGSNetClassifier
    from rgs_detectron.modeling import RGSNetSpec

    spec = RGSNetSpec.create("b-RGS", 26, 0.25)
    torch.save(RGSNetClassifier(spec).state_dict(), tmp_path / "in.pth")
    result = convert_checkpoint(str(tmp_path / "in.pth"), str(tmp_path / "out.pth"), spec)
    text = (ROOT / "docs" / "CONVERT.md").read_text()
    assert f"Wrote {len(result.tensors)} tensors to /work/b-RGS-26-0.25x.pth" in text
    counters = len([d for d in result.dropped if "num_batches" in d[0]])
    assert f"Dropped {counters} tensors (bn1.num_batches_tracked" in text


def test_every_test_the_guarantees_cite_exists():
    """docs/GUARANTEES.md names tests as `test_file.py::test_name` or, after the first, `test_name`."""
    defined = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        defined[path.name] = set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
    cited = 0
    for cell in re.findall(r"`([^`]*test_\w+[^`]*)`", (ROOT / "docs" / "GUARANTEES.md").read_text()):
        file, _, name = cell.rpartition("::")
        if not name.startswith("test_"):
            continue
        if file:
            current = file
        assert name in defined[current], f"docs/GUARANTEES.md cites {current}::{name}, which does not exist"
        cited += 1
    assert cited > 30


@pytest.mark.parametrize("marker,raw", [("study", "pretrain_study.json"), ("init-study", "init_study.json")])
def test_the_readmes_study_figures_are_the_raw_results(marker, raw):
    """Every mean ± std the README quotes from a study is computed from docs/results/ (and the
    study there is complete): no figure typed by hand."""
    section = doc_section("README.md", marker)
    results = json.loads((ROOT / "docs" / "results" / raw).read_text())
    assert not results.get("partial") and f"docs/results/{raw}" in section
    runs = [run.get("test_error") for run in results["classification"].values()]
    runs += [run.get("first_epoch_train_loss") for run in results["classification"].values()]
    runs += [aps for row in results["detection"].values() for aps in row.values()]
    for values in filter(None, runs):
        assert f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" in section, values


def test_the_readmes_demo_figure_is_the_spread_of_its_recorded_runs():
    """make demo's AP is quoted as the range over the matrix's environments and thread counts (one run's figure is
    not the demo's: the order of floating-point sums moves it), and every recorded run clears the stated floor."""
    section = doc_section("README.md", "demo-runs")
    results = json.loads((ROOT / "docs" / "results" / "demo_runs.json").read_text())
    aps = [run["AP"] for run in results["runs"]]
    assert "docs/results/demo_runs.json" in section and len(aps) >= 2
    assert f"AP {min(aps):.2f} to {max(aps):.2f}" in section
    assert f"at least {results['floor_ap']:g}" in section and min(aps) >= results["floor_ap"]
    for run in results["runs"]:
        assert f"| {run['environment']} | {run['python']} | {run['torch']} | {run['threads']} | {run['AP']:.2f} |" \
            in section
