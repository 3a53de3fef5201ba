"""The benchmark runs end to end on the CPU, measures the shipped network and reports what it promises."""
import json
import math

import pytest
import torch

from detectron2.modeling import build_model

from rgs_detectron.model_zoo import get_config_file

from common import rgs_cfg, tool_module

analyze_model = tool_module("analyze_model")
benchmark_module = timing = tool_module("benchmark")


@pytest.fixture(scope="module")
def benchmark():
    return benchmark_module


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_tiny_cpu_run_writes_complete_json(benchmark, tmp_path):
    """Every measurement but the compiled one (tests/test_shortcuts.py compiles), at one thread and all."""
    threads = torch.get_num_threads()
    argv = [
        "--device", "cpu", "--batch", "1", "--input-size", "96", "128", "--rounds", "2", "--depth", "26",
        "--width-mult", "0.25", "--fpn-channels", "32", "--threads", "1", "0", "--amp", "on", "--skip", "compile",
        "--output",
        str(tmp_path)
    ]
    # a smaller box head keeps the test quick; any Detectron2 key can be overridden
    assert benchmark.main(argv + ["MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64"]) == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    rows = ["original", "b-RGS/lean", "b-RGS/reference", "Res-RGS/lean", "Res-RGS/reference"]
    assert [run["threads"] for run in report["runs"]] == [1, threads]
    eager = {f"{m}_{p}" for m in ("train_ms", "saved_mb", "infer_ms", "backbone_infer_ms") for p in ("fp32", "amp")}
    exported = {"torchscript_ms", "onnx_ms"}  # once per variant: an export records the reference ops whatever the row
    for run in report["runs"]:
        assert list(run["results"]) == list(run["ratios"]) == rows
        for name in rows:
            want = eager | {"params_m"} | (exported if "reference" not in name else set())
            if run is report["runs"][0]:  # training: at the last thread count only
                want -= {"train_ms_fp32", "train_ms_amp"}
            assert set(run["results"][name]) == set(run["ratios"][name]) == want, name
            assert run["spread_ms"][name]["infer_ms_fp32"][2] == 2  # one sample per round
        assert all(r == 1.0 for r in run["ratios"]["original"].values())
        values = list(_numbers(run["results"])) + list(_numbers(run["ratios"]))
        assert values and all(math.isfinite(v) and v > 0 for v in values)
        for variant in ("b-RGS", "Res-RGS"):  # the lean shortcut keeps activation memory at the original's
            lean, reference = (run["ratios"][f"{variant}/{impl}"]["saved_mb_fp32"] for impl in ("lean", "reference"))
            assert lean < 1.01 < reference
    assert {"peak_mb", "compile"} <= set(report["skipped"])  # CPU: no CUDA allocator peak, and it says so
    assert set(report["environment"]["load_average_1_5_15_min"]) == {"before", "after"}
    assert torch.get_num_threads() == threads  # --threads is undone on return


def test_plan_always_measures_the_baseline_first(benchmark):
    argv = ["--variants", "res-rgs", "b-RGS", "--shortcut-impl", "lean", "reference"]
    args = benchmark.get_parser().parse_args(argv)
    names = [name for name, _, _ in benchmark._plan(args)]
    assert names == ["original", "Res-RGS/lean", "Res-RGS/reference", "b-RGS/lean", "b-RGS/reference"]


def test_the_benchmarked_network_is_the_shipped_fpn_config(benchmark):
    """Same keys as Base-RGSNet-FPN.yaml (stride in the 3x3 conv, as trained), same parameter names."""
    args = benchmark.get_parser().parse_args(
        ["--depth", "26", "--width-mult", "0.25", "--norm", "BN", "--freeze-at", "0"])
    args.device = "cpu"
    cfg = benchmark.build_cfg(args, "Res-RGS", "auto")
    shipped = rgs_cfg("MODEL.RGSNET.VARIANT", "Res-RGS", "MODEL.RESNETS.DEPTH", 26, "MODEL.RESNETS.NORM", "BN",
                      "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                      "MODEL.RESNETS.WIDTH_PER_GROUP", 16, "MODEL.BACKBONE.FREEZE_AT", 0, "MODEL.ROI_HEADS.NUM_CLASSES",
                      80, "MODEL.WEIGHTS", "", "MODEL.RGSNET.GN_GROUPS", 8,
                      base=get_config_file("Base-RGSNet-FPN.yaml"))
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.MODEL == shipped.MODEL and cfg.INPUT == shipped.INPUT
    assert list(build_model(cfg).state_dict()) == list(build_model(shipped).state_dict())


def test_synthetic_batch_is_valid_and_reproducible():
    a = timing.synthetic_batch(2, 64, 96, 80, "cpu", seed=3)
    b = timing.synthetic_batch(2, 64, 96, 80, "cpu", seed=3)
    for x, y in zip(a, b):
        assert x["image"].dtype == torch.uint8 and x["image"].shape == (3, 64, 96)
        assert torch.equal(x["image"], y["image"])
        boxes = x["instances"].gt_boxes.tensor
        assert torch.equal(boxes, y["instances"].gt_boxes.tensor)
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
        assert x["instances"].gt_classes.max() < 80


def test_analyze_input_size_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        analyze_model.main(["--config-file", get_config_file("demo/digits_res_rgs.yaml"), "--input-size", "0", "-5"])
    assert exit_.value.code == 2
    assert "analyze: error: argument --input-size: 0 is invalid: give an integer > 0" in capsys.readouterr().err
