"""TorchScript and ONNX exports of a tiny RGS Faster R-CNN reproduce eager PyTorch."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rgs_detectron import export as rgs_export
from rgs_detectron.modeling import ReLUGroupNorm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import export_model as export_tool  # noqa: E402  (tools/export_model.py)
from common import save_random_detector  # noqa: E402

onnxruntime = pytest.importorskip("onnxruntime")

# Tiny Res-RGS Faster R-CNN FPN. SHORTCUT_IMPL "lean" on purpose: export must switch it to
# "reference". A low score threshold keeps detections, so the comparison is not of empties.
TINY_YAML = f"""\
_BASE_: "{ROOT / 'configs' / 'Base-RGSNet-FPN.yaml'}"
MODEL:
  DEVICE: "cpu"
  RESNETS: {{DEPTH: 26, STEM_OUT_CHANNELS: 32, RES2_OUT_CHANNELS: 64, WIDTH_PER_GROUP: 32, NORM: "GN"}}
  BACKBONE: {{FREEZE_AT: 0}}
  RGSNET: {{VARIANT: "Res-RGS", SHORTCUT_IMPL: "lean"}}
  FPN: {{OUT_CHANNELS: 32}}
  RPN: {{PRE_NMS_TOPK_TEST: 200, POST_NMS_TOPK_TEST: 50}}
  ROI_HEADS: {{NUM_CLASSES: 3, SCORE_THRESH_TEST: 0.05}}
  ROI_BOX_HEAD: {{FC_DIM: 64}}
INPUT: {{MIN_SIZE_TEST: 128, MAX_SIZE_TEST: 192}}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config file, weights file, frozen cfg) of a random-weight tiny detector."""
    return save_random_detector(tmp_path_factory.mktemp("tiny_export"), TINY_YAML)


def test_export_both_formats_match_eager(tiny, tmp_path, capsys):
    config, weights, cfg = tiny
    out = tmp_path / "exported"
    rc = export_tool.main(["--config-file", config, "--weights", weights, "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["model.onnx", "model.ts"]  # and no temporary files
    assert "verified against eager" in capsys.readouterr().out

    # Independently of the tool's own check: reload both files and compare on the traced
    # size, the tool's second size and a third size never seen during export.
    model = rgs_export.build_export_model(cfg)
    rg_norms = [m for m in model.modules() if isinstance(m, ReLUGroupNorm)]
    assert rg_norms and all(m.impl == "reference" for m in rg_norms)
    images = rgs_export.sample_images(cfg)
    third = torch.randint(0, 256, (3, 112, 150), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    images.append(third)
    assert len({tuple(i.shape) for i in images}) == 3

    adapter = rgs_export._adapter(model, images[0])
    names = rgs_export._output_names(adapter, images[0])
    assert names == ["pred_boxes", "pred_classes", "scores", "image_size"]
    ts = torch.jit.load(str(out / "model.ts"))
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == names
    for image in images:
        with torch.no_grad():
            eager = adapter(image)
            traced = ts(image)
        onnx_out = session.run(None, {"image": image.numpy()})
        assert len(eager[0]) > 0, "the comparison must involve detections"
        assert eager[3].tolist() == list(image.shape[1:])
        # TorchScript: same kernels -> equal (tolerance 1e-4 for thread-order effects).
        for e, t in zip(eager, traced):
            assert e.shape == t.shape and e.dtype == t.dtype
            torch.testing.assert_close(t, e, atol=rgs_export.TORCHSCRIPT_ATOL, rtol=0)
        # ONNX Runtime: 1e-3 on boxes (pixels) and scores, identical classes and counts.
        check = rgs_export.compare_outputs(names, eager, onnx_out, rgs_export.ONNX_ATOL)
        assert check["detections"] == len(eager[0]) > 0
        assert np.array_equal(onnx_out[1], eager[1].numpy())


def test_failed_verification_writes_nothing(tiny, tmp_path, monkeypatch, capsys):
    """An export whose outputs drift from eager is rejected and no file is left behind."""
    config, weights, _ = tiny
    real = rgs_export._trace_torchscript

    def drifting(adapter, image, path):
        run = real(adapter, image, path)
        return lambda img: [o + 0.01 if o.is_floating_point() else o for o in run(img)]

    monkeypatch.setattr(rgs_export, "_trace_torchscript", drifting)
    out = tmp_path / "exported"
    rc = export_tool.main(
        ["--config-file", config, "--weights", weights, "--output", str(out), "--format", "torchscript"]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED verification" in err and "pred_boxes" in err and "differs from eager" in err
    assert os.listdir(out) == []


def test_compare_outputs_tolerates_tied_order_but_not_wrong_classes():
    names = ["pred_boxes", "pred_classes", "scores", "image_size"]
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]])
    classes = torch.tensor([0, 1, 1])
    scores = torch.tensor([0.5, 0.5, 0.2])
    size = torch.tensor([32, 32])
    eager = [boxes, classes, scores, size]
    swapped = [boxes[[1, 0, 2]], classes[[1, 0, 2]], scores[[1, 0, 2]], size]
    assert rgs_export.compare_outputs(names, eager, swapped, 1e-3)["detections"] == 3
    wrong = [boxes, torch.tensor([0, 2, 1]), scores, size]
    with pytest.raises(rgs_export.ExportVerificationError, match="classes differ"):
        rgs_export.compare_outputs(names, eager, wrong, 1e-3)
    fewer = [boxes[:2], classes[:2], scores[:2], size]
    with pytest.raises(rgs_export.ExportVerificationError, match="shape"):
        rgs_export.compare_outputs(names, eager, fewer, 1e-3)
