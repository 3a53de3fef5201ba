"""tools/benchmark.py runs end to end on the CPU and reports what it promises."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("rgs_benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_tiny_cpu_run_writes_complete_json(benchmark, tmp_path):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    benchmark.main([
        "--device", "cpu", "--batch", "1", "--height", "96", "--width", "128",
        "--iters", "1", "--warmup", "1", "--depth", "26", "--width-mult", "0.25",
        "--fpn-channels", "32", "--threads", "1", "--shortcut-impl", "lean", "--amp", "on",
        "--output", str(out),
        # a smaller box head keeps the test quick; any Detectron2 key can be overridden
        "--opts", "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64",
    ])
    report = json.loads(out.read_text())
    variants = ["original", "b-RGS", "d-RGS", "Res-RGS"]
    assert list(report["results"]) == variants
    assert list(report["ratios"]) == variants
    kinds = ("train_ms", "backbone_ms", "saved_mb", "infer_ms", "backbone_infer_ms")
    expected = {f"{m}_{p}" for m in kinds for p in ("fp32", "amp")}
    expected.add("params_m")
    for name in variants:
        assert set(report["results"][name]) == expected
        assert set(report["ratios"][name]) == expected
    assert all(r == 1.0 for r in report["ratios"]["original"].values())
    values = list(_numbers(report["results"])) + list(_numbers(report["ratios"]))
    assert values and all(math.isfinite(v) and v > 0 for v in values)
    assert "peak_mb" in report["skipped"]  # CPU: no CUDA allocator peak, and it says so
    # The lean shortcut keeps activation memory at the original's (within 1%).
    for name in variants[1:]:
        assert report["ratios"][name]["saved_mb_fp32"] < 1.01
    assert torch.get_num_threads() == threads  # --threads is undone on return


def test_plan_always_measures_the_baseline_first(benchmark):
    argv = ["--variants", "res-rgs", "b-RGS", "--shortcut-impl", "lean", "reference"]
    args = benchmark.get_parser().parse_args(argv)
    names = [name for name, _, _ in benchmark._plan(args)]
    assert names == ["original", "Res-RGS/lean", "Res-RGS/reference", "b-RGS/lean", "b-RGS/reference"]


def test_synthetic_batch_is_valid_and_reproducible(benchmark):
    a = benchmark.synthetic_batch(2, 64, 96, 80, "cpu", seed=3)
    b = benchmark.synthetic_batch(2, 64, 96, 80, "cpu", seed=3)
    for x, y in zip(a, b):
        assert x["image"].dtype == torch.uint8 and x["image"].shape == (3, 64, 96)
        assert torch.equal(x["image"], y["image"])
        boxes = x["instances"].gt_boxes.tensor
        assert torch.equal(boxes, y["instances"].gt_boxes.tensor)
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
        assert x["instances"].gt_classes.max() < 80
