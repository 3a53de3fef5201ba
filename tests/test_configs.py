"""Every shipped config loads and builds; the C4/FPN schedule twins agree."""
import glob
import os

import pytest

from detectron2.modeling import build_model

from common import rgs_cfg

CONFIGS = sorted(
    p for p in glob.glob("configs/**/*.yaml", recursive=True) if not os.path.basename(p).startswith("Base-")
)


def test_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    for ds in ("coco", "voc"):
        for v in ("original", "b_rgs", "d_rgs", "res_rgs"):
            assert f"{ds}_{v}_50.yaml" in names and f"{ds}_{v}_50_fpn.yaml" in names


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads_and_builds(path):
    cfg = rgs_cfg(base=path)
    model = build_model(cfg)
    assert model.backbone is not None
    if "demo" not in path:
        assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.INPUT.FORMAT == "RGB"
        assert cfg.MODEL.WEIGHTS.startswith("checkpoints/imagenet/")
        expected = {"coco": ("coco_2014_minival",), "voc": ("voc_2007_test",)}[os.path.basename(path).split("_")[0]]
        assert tuple(cfg.DATASETS.TEST) == expected


@pytest.mark.parametrize("ds", ["COCO2014-5ep", "VOC2007-10ep"])
def test_c4_and_fpn_share_data_and_schedule(ds):
    c4 = rgs_cfg(base=f"configs/Base-{ds}-C4.yaml")
    fpn = rgs_cfg(base=f"configs/Base-{ds}-FPN.yaml")
    for node in ("DATASETS", "SOLVER", "INPUT"):
        assert c4[node] == fpn[node], node
    assert c4.MODEL.ROI_HEADS.NUM_CLASSES == fpn.MODEL.ROI_HEADS.NUM_CLASSES


def test_coco_schedule_is_five_epochs():
    cfg = rgs_cfg(base="configs/coco_res_rgs_50.yaml")
    images = 117_266  # train2014 + valminusminival2014 with annotations
    assert cfg.SOLVER.MAX_ITER == round(5 * images / cfg.SOLVER.IMS_PER_BATCH)
    assert tuple(cfg.DATASETS.TRAIN) == ("coco_2014_train", "coco_2014_valminusminival")
