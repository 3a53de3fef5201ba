"""Activation growth at initialisation: the docs' tables are what the tool computes, and
``rg_init`` changes only what it says."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rgs_detectron import get_rgsnet_cfg
from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.errors import ConfigError
from rgs_detectron.modeling import RGSNet, RGSNetSpec, ReLUGroupNorm

from common import ROOT, doc_section, tool_module

ALL = ["res2", "res3", "res4", "res5"]


def _doc_tables():
    block = doc_section("docs/ARCHITECTURE.md", "activation-growth")
    return [t.splitlines() for t in block.strip().split("\n\n")]


def test_docs_tables_are_what_the_tool_computes():
    """Every row and header as the tool writes them, and one cell (the cheapest) recomputed."""
    tool = tool_module("activation_growth")
    tables = _doc_tables()
    assert len(tables) == len(tool.MODELS)
    for model, lines in zip(tool.MODELS, tables):
        assert lines[:2] == tool.header(model, tool.DEPTHS)
        assert [tuple(c.strip(" `") for c in line.split("|")[1:3]) for line in lines[2:]] == tool.rows()
    cell = tool.cell(tool.stage_stds("classifier", "Res-RGS", 26))
    assert f"| `Res-RGS` | paper | {cell} |" in "\n".join(tables[0])


def _growth(rhos):
    """std(y) = sqrt(s^2 + 2 ρ s + 2) from sqrt(2), once per identity block (docs/ARCHITECTURE.md)."""
    s = 2**0.5
    for rho in rhos:
        s = (s * s + 2 * rho * s + 2)**0.5
    return s


def test_the_growth_formula_gives_what_the_docs_say_it_gives():
    """With a centred Gaussian's ρ = 0.86 the formula falls short of the tables; with ρ measured per block (depth 50's,
    recomputed) it gives res4's cell: the docs quote both, and the ρ, as computed."""
    text = " ".join((ROOT / "docs" / "ARCHITECTURE.md").read_text().split("## Activation growth")[1].split())
    gaussian = 1 / (2 * (0.5 - 1 / (2 * math.pi))**0.5)
    assert f"= {gaussian:.2f}`" in text
    quoted = "this gives {:.2f} after one identity block, {:.2f} after five and {:.2f} after 22"
    assert quoted.format(*(_growth([round(gaussian, 2)] * n) for n in (1, 5, 22))) in text
    rhos = tool_module("activation_growth").res4_correlations(50)
    assert "ρ is " + ", ".join(f"{r:.2f}" for r in rhos) + " in the five of depth 50" in text
    res4 = f"{_growth(rhos):.2f}"
    assert f"gives 2.53, {res4} and" in text
    assert f"| 3.59 / 4.65 / {res4} / 3.60 |" in doc_section("docs/ARCHITECTURE.md", "activation-growth")


def _pair(build):
    """(paper, zero) Res-RGS networks made from the same seed."""
    made = []
    for init in ("paper", "zero"):
        torch.manual_seed(0)
        spec = RGSNetSpec.create("Res-RGS", 26, 0.25, norm="BN", rg_init=init)
        made.append(RGSNetClassifier(spec) if build == "classifier" else RGSNet(spec=spec, out_features=ALL))
    return made


@pytest.mark.parametrize("build", ["classifier", "backbone"])
def test_rg_init_zero_changes_only_the_rg_shortcuts_initial_scale(build):
    paper, zero = _pair(build)
    p, z = paper.state_dict(), zero.state_dict()
    assert [(k, v.shape) for k, v in p.items()] == [(k, v.shape) for k, v in z.items()]
    assert sum(t.numel() for t in paper.parameters()) == sum(t.numel() for t in zero.parameters())
    changed = [k for k in p if not torch.equal(p[k], z[k])]
    # One per identity-shape block (depth 26: two blocks per stage, the first a projection).
    assert len(changed) == 4 and all(k.endswith("shortcut_norm.weight") for k in changed)
    assert all(bool((p[k] == 1).all()) and bool((z[k] == 0).all()) for k in changed)


def test_rg_init_zero_block_starts_as_the_paper_block_without_its_rg_term():
    (paper, zero), x = _pair("backbone"), torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        block_paper, block_zero = paper.res2[1].train(), zero.res2[1].train()
        groups = block_paper.shortcut_norm.num_groups
        torch.testing.assert_close(block_zero(x), block_paper(x) - F.group_norm(F.relu(x), groups))


def test_the_default_is_the_papers_initialisation():
    assert RGSNetSpec.create("Res-RGS").rg_init == "paper"
    assert RGSNetSpec.from_cfg(get_rgsnet_cfg()).rg_init == "paper"
    for model in (RGSNetClassifier(RGSNetSpec.create("Res-RGS", 26, 0.25)), RGSNet(depth=26, width_mult=0.25)):
        norms = [m for m in model.modules() if isinstance(m, ReLUGroupNorm)]
        assert norms and all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in norms)


def test_rg_init_zero_is_refused_where_the_block_would_lose_its_shortcut():
    with pytest.raises(ConfigError, match=r"rg_init \(MODEL.RGSNET.RG_INIT\) = 'zero' is invalid: .* b-RGS would"):
        RGSNetSpec.create("b-RGS", rg_init="zero")


def test_the_from_scratch_lsj_config_starts_res_rgs_at_zero_and_says_how_to_run_another_variant():
    from detectron2.config import instantiate

    from rgs_detectron import model_zoo

    name = "lazy/mask_rcnn_res_rgs_50_fpn_100ep_lsj.py"
    cfg = model_zoo.get_config(name)
    assert instantiate(cfg.rgsnet).rg_init == "zero"
    cfg.rgsnet.variant = "b-RGS"
    with pytest.raises(ConfigError, match="rg_init"):
        instantiate(cfg.rgsnet)
    documented = "rgsnet.variant=b-RGS rgsnet.rg_init=paper"  # the config's own docstring
    assert documented in Path(model_zoo.get_config_file(name)).read_text()
    cfg.rgsnet.rg_init = "paper"
    assert instantiate(cfg.rgsnet).variant.name == "b-RGS"
