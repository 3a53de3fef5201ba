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


def _anchors(doc):
    """The anchors GitHub makes of a document's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_points_to_a_file_and_anchor_that_exist():
    """...in the repository: the docs stand alone, citing nothing beside the checkout; `#anchor`s name a heading."""
    checked = 0
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (doc.parent / target).resolve() if target else doc
            assert path.exists(), f"{doc.name} links {target}"
            assert ROOT.resolve() in path.parents, f"{doc.name} links {target}, outside the repository"
            if anchor:
                assert anchor in _anchors(path), f"{doc.name} links {target}#{anchor}: no such heading"
            checked += 1
    assert checked > 40


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


def _results(raw):
    results = json.loads((ROOT / "docs" / "results" / raw).read_text())
    assert not results.get("partial")
    return results


def _figures(results):
    """Every "mean ± std" (sample standard deviation) a study's raw numbers give."""
    runs = [run.get("test_error") for run in results["classification"].values()]
    runs += [run.get("first_epoch_train_loss") for run in results["classification"].values()]
    runs += [aps for row in results["detection"].values() for aps in row.values()]
    return {f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" for values in filter(None, runs)}


@pytest.mark.parametrize("marker,raw", [("study", "pretrain_study.json"), ("init-study", "init_study.json")])
def test_the_studys_figures_are_the_raw_results(marker, raw):
    """Every mean ± std docs/RESULTS.md quotes from a study is computed from docs/results/ (and the study there is
    complete): no figure typed by hand."""
    section = doc_section("docs/RESULTS.md", marker)
    assert f"docs/results/{raw}" in section
    for figure in _figures(_results(raw)):
        assert figure in section, figure


def test_the_readmes_summary_quotes_only_the_raw_results():
    """The README's summary table: each mean ± std is one the studies' raw numbers give, and it says where they are."""
    section = doc_section("README.md", "results-summary")
    quoted = re.findall(r"\d+\.\d\d ± \d+\.\d\d", section)
    assert len(quoted) >= 10 and "docs/RESULTS.md" in section
    assert set(quoted) <= _figures(_results("pretrain_study.json")) | _figures(_results("init_study.json"))


def test_the_gaps_the_docs_quote_are_computed_from_the_raw_results():
    """The gaps between variants, as docs/RESULTS.md and the README say them ("0.08" and "2-3 AP" once stood for
    0.07, 1.93 and 3.36), and the small-sample caveat wherever a gap is called about two standard deviations."""
    study, init = _results("pretrain_study.json"), _results("init_study.json")
    err = {v: statistics.mean(run["test_error"]) for v, run in study["classification"].items()}
    det = {v: {start: statistics.mean(aps) for start, aps in row.items()} for v, row in study["detection"].items()}
    zero, paper = init["detection"]["Res-RGS (rg_init zero)"]["scratch"], init["detection"]["Res-RGS"]["scratch"]
    o = det["original"]
    results = " ".join(doc_section("docs/RESULTS.md", "study").split())
    assert (f"b-RGS by {err['original'] - err['b-RGS']:.2f} points, d-RGS by {err['original'] - err['d-RGS']:.2f}, "
            f"Res-RGS by {err['original'] - err['Res-RGS']:.2f})") in results
    behind = (f"b-RGS by {o['scratch'] - det['b-RGS']['scratch']:.2f} AP and Res-RGS by "
              f"{o['scratch'] - det['Res-RGS']['scratch']:.2f}")
    ahead = f"by {det['Res-RGS']['pretrained'] - o['pretrained']:.2f} AP"
    assert behind in results and f"ahead of the plain ResNet {ahead}" in results
    readme = " ".join(doc_section("README.md", "results-summary").split())
    assert behind in readme and ahead in readme
    init_text = " ".join(doc_section("docs/RESULTS.md", "init-study").split())
    per_seed = [z - p for z, p in zip(zero, paper)]
    assert f"(by {per_seed[0]:.1f}, {per_seed[1]:.1f} and {per_seed[2]:.1f} AP" in init_text
    assert f"from scratch ({o['scratch'] - statistics.mean(zero):.2f} AP)" in init_text
    for doc in DOCS:
        text = " ".join(doc.read_text().split())
        for at in [m.start() for m in re.finditer("two standard deviations", text)]:
            assert "p = 0.10" in text[at - 300:at + 300], f"{doc.name}: a gap called two standard deviations"


def test_the_readmes_demo_figure_is_the_spread_of_its_recorded_runs():
    """make demo's AP is quoted as the range over the matrix's environments and thread counts (one run's figure is
    not the demo's: the order of floating-point sums moves it), and every recorded run clears the stated floor."""
    section = doc_section("docs/RESULTS.md", "demo-runs")
    results = json.loads((ROOT / "docs" / "results" / "demo_runs.json").read_text())
    aps = [run["AP"] for run in results["runs"]]
    assert "docs/results/demo_runs.json" in section and len(aps) >= 2
    assert f"AP {min(aps):.2f} to {max(aps):.2f}" in section
    assert f"at least {results['floor_ap']:g}" in section and min(aps) >= results["floor_ap"]
    for run in results["runs"]:
        assert f"| {run['environment']} | {run['python']} | {run['torch']} | {run['threads']} | {run['AP']:.2f} |" \
            in section


def test_the_settings_table_claims_a_paper_fact_only_with_its_reference():
    """docs/ARCHITECTURE.md's settings table: a filled "what the paper states" cell names its section, table,
    equation or figure; an empty one (—) leaves the setting to "our choice", which then says what we chose."""
    rows = doc_section("docs/ARCHITECTURE.md", "settings").splitlines()
    assert rows[0] == "| setting | what the paper states | our choice (where the paper is silent) |" and len(rows) > 20
    for row in rows[2:]:
        setting, paper, ours = (cell.strip() for cell in row.strip("|").split("|"))
        assert paper == "—" or re.search(r"\b(Sec\.|Table|Eq\.|Fig\.) \d", paper), f"{setting}: no reference"
        assert paper != "—" or ours not in ("", "—"), f"{setting}: neither the paper's nor ours"


def test_convert_docs_list_exactly_the_fields_a_record_compares():
    """docs/CONVERT.md's "Compared:" list is spec_record's RECORDED_FIELDS, in order, and "Not recorded:" names
    every other field of RGSNetSpec (the list once lacked `block`)."""
    import dataclasses

    from rgs_detectron.modeling import RGSNetSpec
    from rgs_detectron.modeling.spec_record import RECORDED_FIELDS

    text = " ".join((ROOT / "docs" / "CONVERT.md").read_text().split())
    compared, not_recorded = text.split("- Compared: ", 1)[1].split("Not recorded: ", 1)
    assert re.findall(r"`(\w+)`", compared) == list(RECORDED_FIELDS)
    others = {f.name for f in dataclasses.fields(RGSNetSpec)} - set(RECORDED_FIELDS)
    assert set(re.findall(r"`(\w+)`", not_recorded.split(".", 1)[0])) == others


# Phrases that once credited the paper with what it does not state (momentum, weight decay and the epoch count of
# its ImageNet training, an initialisation, a test split): the settings table says what it states.
UNSTATED = [
    "paper's initiali", "as in the paper", "paper's 90", "90-epoch pretraining", "paper's cifar recipe (sgd",
    "paper's imagenet recipe", "the `imagenet` recipe is the paper's", "as the paper's table 10 implies"
]


def test_nothing_credits_the_paper_with_what_it_does_not_state():
    sources = [
        *DOCS, *(ROOT / "rgs_detectron").rglob("*.py"), *(ROOT / "rgs_detectron").rglob("*.yaml"),
        *(ROOT / "tools").glob("*.py")
    ]
    for path in sources:
        text = " ".join(path.read_text().lower().split())
        found = [phrase for phrase in UNSTATED if phrase in text]
        assert not found, f"{path.relative_to(ROOT)}: {found} (docs/ARCHITECTURE.md, 'Settings', says what it states)"


def test_the_readme_reads_top_down_in_350_lines():
    """What it is, a picture, the two commands, the quick start from install to a COCO run, then the rest."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 350
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[:4] == ["Contents", "The two commands", "Quick start: from install to a COCO run", "Results"]
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    steps = ["Install", "ImageNet weights", "Datasets", "minival", "cli.train_net --config-file configs/coco_"]
    assert [quick.index(step) for step in steps] == sorted(quick.index(step) for step in steps)
    assert "None are published" in quick and "make_digits" in text and "![" in text.split("## Contents")[0]


def test_the_warm_start_figures_are_the_raw_results(tmp_path):
    """The warm-start section: each detector's AP and first-iteration losses from docs/results/warm_start_study.json,
    the fine-tuned classifiers' test errors, and the depth-50 table as tools/warm_start_depth50.py writes it from
    docs/results/warm_start_depth50.json (no figure typed by hand)."""
    import argparse

    from common import tool_module

    section = doc_section("docs/RESULTS.md", "warm-study")
    study = _results("warm_start_study.json")
    assert "docs/results/warm_start_study.json" in section and "docs/results/warm_start_depth50.json" in section
    for variant, row in study["detection"].items():
        for start, aps in row.items():
            assert aps and all(f"{ap:.2f}" in section for ap in aps), (variant, start)
    for variant, run in study["finetune"].items():
        assert all(f"{e:.2f}" in section for e in run["test_error"]), variant
    for variant, row in study["first_iterations"].items():
        for start, runs in row.items():
            losses = [it["total_loss"] for it in runs[0]["iterations"]]
            assert all(f"{losses[i]:.3f}" in section for i in (0, 1, 2, 19)), (variant, start)
    depth50 = json.loads((ROOT / "docs" / "results" / "warm_start_depth50.json").read_text())
    args = argparse.Namespace(**dict(depth50["settings"], output=str(tmp_path)))
    tool_module("warm_start_depth50").summarize(args, depth50["starts"])
    table = (tmp_path / "summary.md").read_text()
    assert table == (ROOT / "docs" / "results" / "warm_start_depth50.md").read_text()
    assert all(line in section for line in table.splitlines() if line.startswith("| "))
    earlier = _results("pretrain_study.json")["detection"]
    assert all(f"{row[start][0]:.2f}" in section for row in earlier.values() for start in row)  # seed 0 beside
    assert set(re.findall(r"\d+\.\d\d ± \d+\.\d\d", section)) <= _figures(_results("pretrain_study.json"))
