"""TorchScript and ONNX exports of a tiny RGS Faster R-CNN, and torch.export's program of its backbone,
reproduce eager PyTorch."""
import os
import sys

import numpy as np
import pytest
import torch

from rgs_detectron import export as rgs_export
from rgs_detectron.cli import export as export_tool
from rgs_detectron.engine.predictor import load_trained_model

from common import save_random_detector

onnxruntime = pytest.importorskip("onnxruntime")

# Tiny Res-RGS Faster R-CNN FPN. SHORTCUT_IMPL "lean" on purpose: the exports must hold the
# reference ops all the same. A low score threshold keeps detections, so the comparison is not of empties.
TINY_EXPORT = [
    "MODEL.RGSNET.SHORTCUT_IMPL", "lean", "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.05,
    "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 192
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config file, weights file, frozen cfg) of a random-weight tiny detector."""
    return save_random_detector(tmp_path_factory.mktemp("tiny_export"), "Res-RGS", "FPN", *TINY_EXPORT)


def test_export_both_formats_match_eager(tiny, tmp_path, capsys):
    config, weights, cfg = tiny
    out = tmp_path / "exported"
    rc = export_tool.main(["--config-file", config, "--weights", weights, "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["model.onnx", "model.ts"]  # and no temporary files
    assert "verified against eager" in capsys.readouterr().out

    # Independently of the tool's own check: reload both files and compare on the traced
    # size, the tool's second size and a third size never seen during export.
    model = load_trained_model(cfg)
    images = rgs_export.sample_images(cfg)
    third = torch.randint(0, 256, (3, 112, 150), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    images.append(third)
    assert len({tuple(i.shape) for i in images}) == 3

    adapter, names, _, _ = rgs_export._references(model, images[:1])
    assert names == ["pred_boxes", "pred_classes", "scores", "image_size"]
    ts = torch.jit.load(str(out / "model.ts"))
    graph = str(ts.inlined_graph)
    assert "group_norm" in graph and "PythonOp" not in graph  # the RG shortcut's reference ops, not the lean one
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
            torch.testing.assert_close(t, e, atol=rgs_export.TOLERANCES["torchscript"], rtol=0)
        # ONNX Runtime: 1e-3 on boxes (pixels) and scores, identical classes and counts.
        check = rgs_export.compare_outputs(names, eager, onnx_out, rgs_export.TOLERANCES["onnx"])
        assert check["detections"] == len(eager[0]) > 0
        assert np.array_equal(onnx_out[1], eager[1].numpy())


PYTHON = "%d.%d" % sys.version_info[:2]
PT2_LACKING = torch.__version__ < rgs_export.PT2_NEEDS_TORCH.get(PYTHON, "0")


@pytest.mark.skipif(
    PT2_LACKING, reason=f"torch {torch.__version__} on Python {PYTHON} has no torch.export for it: "
    "test_pt2_backbone_is_refused_in_one_line_where_torch_lacks_it checks the refusal")
def test_backbone_program_matches_eager(tmp_path, capsys):
    """pt2-backbone: torch.export's program of the backbone, written only when verified, kept unless --overwrite."""
    config, weights, cfg = save_random_detector(tmp_path, "b-RGS", "C4", *TINY_EXPORT, "MODEL.RGSNET.BLOCKS_PER_STAGE",
                                                [1, 1, 1, 1])
    out = tmp_path / "exported"
    argv = ["--config-file", config, "--weights", weights, "--output", str(out), "--format", "pt2-backbone"]
    assert export_tool.main(argv) == 0, capsys.readouterr().err
    assert os.listdir(out) == ["backbone.pt2"]
    printed = capsys.readouterr().out
    assert "pt2-backbone: " in printed and "verified against eager" in printed and "1 feature maps" in printed

    # Independently of the tool's check: a batch of 2 at a size the tool never used.
    program = torch.export.load(str(out / "backbone.pt2")).module()
    backbone = load_trained_model(cfg).backbone
    x = torch.randn(2, 3, 112, 136, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eager, got = backbone(x), program(x)
    assert list(got) == ["res4"]
    torch.testing.assert_close(got["res4"], eager["res4"], atol=rgs_export.TOLERANCES["pt2-backbone"], rtol=0)

    assert export_tool.main(argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_pt2_backbone_is_refused_in_one_line_where_torch_lacks_it(tiny, tmp_path, monkeypatch, capsys):
    """torch 2.3 on Python 3.12 (the matrix's floor) for real; elsewhere a torch this Python needs is pretended
    newer than this one. Refused before any export: not even the TorchScript one asked for with it is written."""
    config, weights, _ = tiny
    if not PT2_LACKING:
        monkeypatch.setitem(rgs_export.PT2_NEEDS_TORCH, PYTHON, "99.0")
    out = tmp_path / "exported"
    argv = [
        "--config-file", config, "--weights", weights, "--output",
        str(out), "--format", "torchscript", "pt2-backbone"
    ]
    assert export_tool.main(argv) == 2
    err = capsys.readouterr().err
    needed = rgs_export.PT2_NEEDS_TORCH[PYTHON]
    assert f"--format pt2-backbone needs torch >= {needed} on Python {PYTHON} (torch.export); this is torch " \
        f"{torch.__version__}" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() or not os.listdir(out)


def test_failed_verification_writes_nothing(tiny, tmp_path, monkeypatch, capsys):
    """An export whose outputs drift from eager is rejected and no file is left behind."""
    config, weights, _ = tiny
    real = rgs_export._trace_torchscript

    def drifting(adapter, image):
        data, run = real(adapter, image)
        return data, (lambda img: [o + 0.01 if o.is_floating_point() else o for o in run(img)])

    monkeypatch.setattr(rgs_export, "_trace_torchscript", drifting)
    out = tmp_path / "exported"
    rc = export_tool.main(
        ["--config-file", config, "--weights", weights, "--output",
         str(out), "--format", "torchscript"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "export: error: torchscript export does not match eager" in err and "pred_boxes" in err
    assert "differs from eager" in err
    assert os.listdir(out) == []


def test_existing_exports_are_kept_unless_overwrite(tiny, tmp_path, capsys):
    config, weights, _ = tiny
    out = tmp_path / "exported"
    out.mkdir()
    (out / "model.ts").write_bytes(b"my earlier export")
    argv = ["--config-file", config, "--weights", weights, "--output", str(out), "--format", "torchscript"]
    assert export_tool.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "model.ts").read_bytes() == b"my earlier export"
    assert export_tool.main(argv + ["--overwrite"]) == 0
    assert torch.jit.load(str(out / "model.ts")) is not None


def test_weights_of_another_depth_are_refused_not_exported(tiny, tmp_path, capsys):
    config, _, _ = tiny
    _, other, _ = save_random_detector(tmp_path, "Res-RGS", "FPN", *TINY_EXPORT, "MODEL.RESNETS.DEPTH", 38)
    out = tmp_path / "exported"
    assert export_tool.main(["--config-file", config, "--weights", other, "--output", str(out)]) == 1
    assert "made for Res-RGS-38, the model's backbone.bottom_up is Res-RGS-26" in capsys.readouterr().err
    assert not out.exists() or os.listdir(out) == []


def test_no_weights_is_refused(tiny, tmp_path, capsys):
    config, _, _ = tiny
    assert export_tool.main(["--config-file", config, "--output", str(tmp_path / "x"), "MODEL.WEIGHTS", ""]) == 2
    assert "not a random model" in capsys.readouterr().err


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
