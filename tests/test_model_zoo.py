"""Used the way Detectron2 projects are used: packaged configs through a model-zoo API, LazyConfig
(shipped .py configs and Detectron2's own with the backbone swapped), Mask R-CNN and RetinaNet
yaml configs, and a plain install with no checkout."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from detectron2 import model_zoo as d2_model_zoo
from detectron2.config import LazyCall as L
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from rgs_detectron import model_zoo
from rgs_detectron.cli import lazy_train_net
from rgs_detectron.cli import train_net as train_net_tool
from rgs_detectron.data.builtin import register_digits
from rgs_detectron.data.digits import generate_digits_dataset
from rgs_detectron.engine.lazy_trainer import lazy_train
from rgs_detectron.errors import ConfigError
from rgs_detectron.modeling import RGSNet, build_rgsnet_backbone

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "rgs_digits_zoo"
LAZY_FPN = str(ROOT / "configs/lazy/coco_res_rgs_50_fpn.py")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    generate_digits_dataset(root / "rgs_digits", num_train=8, num_val=4, image_size=64, min_scale=16, max_scale=30)
    register_digits(str(root), prefix=PREFIX)
    return str(root)


def test_get_config_file_and_get_config():
    path = model_zoo.get_config_file("coco_res_rgs_50.yaml")
    assert os.path.isfile(path) and path.startswith(os.path.dirname(model_zoo.__file__))
    cfg = model_zoo.get_config("coco_res_rgs_50.yaml")
    assert cfg.MODEL.RGSNET.VARIANT == "Res-RGS" and cfg.MODEL.ROI_HEADS.NAME == "RGSNetRes5ROIHeads"
    lazy = model_zoo.get_config("lazy/coco_res_rgs_50_fpn.py")
    assert isinstance(lazy, DictConfig) and lazy.rgsnet.variant == "Res-RGS"
    with pytest.raises(ConfigError, match="not a shipped config; choose one of: coco_b_rgs_50.yaml"):
        model_zoo.get_config("coco_res_rgs_51.yaml")
    assert "lazy/common/data.py" not in model_zoo.list_configs()


@pytest.mark.parametrize("path",
                         ["/etc/passwd", "../../config.py", "../__init__.py", "demo/../../__init__.py", None, 5])
def test_get_config_file_refuses_paths_outside_the_shipped_configs(path):
    """None or a number was a TypeError from os.path.join."""
    with pytest.raises(ConfigError, match="is not a shipped config"):
        model_zoo.get_config_file(path)


def test_get_config_takes_detectron2s_trained_argument():
    assert model_zoo.get_config("coco_res_rgs_50.yaml", trained=False).MODEL.RGSNET.VARIANT == "Res-RGS"
    with pytest.raises(ConfigError, match="no trained detector weights ship with rgs_detectron"):
        model_zoo.get_config("coco_res_rgs_50.yaml", trained=True)


def test_forgetting_add_rgsnet_config_names_it():
    cfg = get_cfg()
    with pytest.raises(ConfigError, match=r"add_rgsnet_config\(cfg\)"):
        build_rgsnet_backbone(cfg, ShapeSpec(channels=3))


def test_import_without_detectron2_says_how_to_install_it():
    code = "import sys; sys.modules['detectron2'] = None; import rgs_detectron"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert "rgs_detectron needs Detectron2" in r.stderr and "tools/setup_env.sh" in r.stderr


def _tiny_lazy(cfg, output, *, voc=False, masks=False):
    """A shipped LazyConfig shrunk to the digits data and two CPU iterations."""
    cfg.rgsnet.depth, cfg.rgsnet.width_mult = 26, 0.25
    if cfg.rgsnet.norm == "FrozenBN":
        cfg.rgsnet.norm = "BN"  # from scratch: trainable norms
    roi = cfg.model.roi_heads
    roi.num_classes = 10
    roi.batch_size_per_image = 32
    roi.box_predictor.test_score_thresh = 0.0  # an untrained model must still predict something
    roi.box_predictor.test_topk_per_image = 10  # not 100 boxes (and masks) per image of an untrained model
    for head in ("box_head", "mask_head"):  # heads of convolutions (the LSJ recipe's): 32 channels, not 256
        if roi.get(head) and roi[head].get("conv_dims"):
            roi[head].conv_dims = [32] * len(roi[head].conv_dims)
    loader = cfg.dataloader
    loader.train.dataset.names = f"{PREFIX}_voc_train" if voc else f"{PREFIX}_train"
    loader.test.dataset.names = f"{PREFIX}_voc_val" if voc else f"{PREFIX}_val"
    loader.train.total_batch_size = 2
    loader.train.num_workers = loader.test.num_workers = 0
    from detectron2.data import transforms as T

    loader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=64, max_size=64)]
    loader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=64, max_size=64)]
    if masks:
        loader.train.mapper.use_instance_mask = True
    cfg.train.update(device="cpu", max_iter=2, eval_period=0, init_checkpoint="", output_dir=str(output))
    cfg.train.amp.enabled = False
    cfg.train.checkpointer.period = 1
    cfg.optimizer.lr = 0.002  # two steps from scratch: small enough to keep the predictions finite
    return cfg


@pytest.mark.parametrize("name", [n for n in model_zoo.list_configs() if n.endswith(".py")])
def test_lazy_configs_read_images_the_way_their_model_expects(name):
    """Train and test mappers and the model agree on the channel order (a test mapper once read BGR
    for an RGB model: every evaluation would have seen swapped channels)."""
    from detectron2.config import instantiate

    cfg = model_zoo.get_config(name)
    formats = {
        cfg.model.input_format, cfg.dataloader.train.mapper.image_format,
        instantiate(cfg.dataloader.test.mapper).image_format
    }
    assert len(formats) == 1, formats


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in model_zoo.list_configs() if n.endswith(".py")])
def test_every_shipped_lazy_config_trains_two_iterations_on_digits(digits, tmp_path, name):
    cfg = _tiny_lazy(model_zoo.get_config(name), tmp_path, voc="voc_" in name, masks="mask_rcnn" in name)
    if "mask_rcnn" in name:
        cfg.model.roi_heads.mask_head.num_classes = 10
    results = lazy_train(cfg)
    assert (tmp_path / "model_final.pth").exists()
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 1
    assert "bbox" in results and set(results["bbox"]) >= {"AP", "AP50"}
    if "mask_rcnn" in name:
        assert "segm" in results


def test_lazy_training_checks_boxes_like_the_yacs_trainer(tmp_path, caplog):
    """Reported once and dropped (an image left without boxes goes too), or refused with train.invalid_boxes=fail."""
    import json

    from detectron2.data.datasets import register_coco_instances

    from rgs_detectron.engine.lazy_trainer import lazy_train_loader
    from rgs_detectron.errors import InputError

    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2)]
    boxes = [[4, 4, 20, 20], [30, 30, -8, 10], [10, 10, 0, 5]]  # valid; negative width; zero width (alone on image 2)
    anns = [{"id": k, "image_id": 1 if k < 2 else 2, "category_id": 1, "bbox": b, "area": 1, "iscrowd": 0}
            for k, b in enumerate(boxes)]
    (tmp_path / "train.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    register_coco_instances("rgs_test_lazy_boxes", {}, str(tmp_path / "train.json"), str(tmp_path))
    cfg = _tiny_lazy(model_zoo.get_config("lazy/coco_res_rgs_50_fpn.py"), tmp_path)
    cfg.dataloader.train.dataset.names = "rgs_test_lazy_boxes"
    caplog.set_level("INFO", logger="rgs_detectron")
    loader = lazy_train_loader(cfg)
    records = loader.dataset.dataset.dataset._dataset  # grouped by aspect ratio < iterable < mapped < the list
    assert len(records) == 1 and [a["bbox"] for a in records[0]["annotations"]] == [[4, 4, 20, 20]]
    assert "dropped 2 invalid boxes" in caplog.text and "1 negative width or height" in caplog.text
    assert "(train.invalid_boxes=fail refuses them)" in caplog.text and "DATASETS" not in caplog.text  # its own key
    cfg.train.invalid_boxes = "fail"
    with pytest.raises(InputError, match="2 invalid boxes") as refused:
        lazy_train_loader(cfg)
    assert "set train.invalid_boxes=drop to train without them" in str(refused.value)


def test_detectron2_lazy_config_with_the_backbone_swapped_trains_a_step(digits, tmp_path):
    """docs/USAGE.md's few lines: Detectron2's own RetinaNet LazyConfig, ResNet replaced by RGSNet."""
    cfg = d2_model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x.py")
    cfg.model.backbone.bottom_up = L(RGSNet)(variant="b-RGS", depth=26, width_mult=0.25, norm="BN",
                                             out_features=["res3", "res4", "res5"], freeze_at=0)
    cfg.model.backbone.top_block.in_channels = 512  # P6 from res5, 2048 channels at 1x, 512 at 0.25x
    cfg.model.num_classes = 10
    cfg.dataloader.train.dataset.names, cfg.dataloader.test.dataset.names = f"{PREFIX}_train", f"{PREFIX}_val"
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = cfg.dataloader.test.num_workers = 0
    cfg.dataloader.train.mapper.use_instance_mask = False
    for mapper in (cfg.dataloader.train.mapper, cfg.dataloader.test.mapper):  # 64-pixel images stay 64 pixels
        mapper.augmentations[0].update(short_edge_length=64, max_size=64)
    cfg.train.update(device="cpu", max_iter=1, eval_period=0, init_checkpoint="", output_dir=str(tmp_path))
    lazy_train(cfg)
    state = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert "backbone.bottom_up.res3.1.shortcut_norm.weight" in state


@pytest.mark.slow
@pytest.mark.parametrize("name,classes_key", [("coco_mask_rcnn_res_rgs_50_fpn_1x.yaml", "MODEL.ROI_HEADS.NUM_CLASSES"),
                                              ("coco_retinanet_res_rgs_50_fpn_1x.yaml", "MODEL.RETINANET.NUM_CLASSES")])
def test_mask_rcnn_and_retinanet_yaml_train_a_step(digits, tmp_path, name, classes_key):
    argv = [
        "--config-file",
        str(ROOT / "configs" / name), "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", classes_key, "10",
        "MODEL.RESNETS.DEPTH", "26", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
        "MODEL.RESNETS.WIDTH_PER_GROUP", "16", "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0",
        "DATASETS.TRAIN", f"('{PREFIX}_train',)", "DATASETS.TEST", f"('{PREFIX}_val',)", "SOLVER.REFERENCE_WORLD_SIZE",
        "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(10,)", "INPUT.MIN_SIZE_TRAIN",
        "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
        "DATALOADER.NUM_WORKERS", "0", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "TEST.DETECTIONS_PER_IMAGE", "10",
        "OUTPUT_DIR",
        str(tmp_path)
    ]
    assert train_net_tool.main(argv) == 0
    assert (tmp_path / "model_final.pth").exists()


@pytest.mark.slow
def test_lazy_train_net_command_line_trains_resumes_and_evaluates(digits, tmp_path, capsys):
    """LazyConfig's key=value overrides; the real entry point (through tools/, in a process of its own) evaluates the
    trained model and exits 0."""
    opts = [
        "rgsnet.depth=26", "rgsnet.width_mult=0.25", "rgsnet.norm=BN", "model.roi_heads.num_classes=10",
        "model.roi_heads.box_predictor.test_topk_per_image=10", "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
        "dataloader.train.mapper.augmentations.0.max_size=64",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "dataloader.test.mapper.augmentations.0.max_size=64", "train.device=cpu", "train.max_iter=2",
        "train.init_checkpoint=", f"train.output_dir={tmp_path}"
    ]
    config = ["--config-file", LAZY_FPN]
    in_process = [f"dataloader.train.dataset.names={PREFIX}_train", f"dataloader.test.dataset.names={PREFIX}_val"]
    assert lazy_train_net.main([*config, *opts, *in_process]) == 0
    assert "copypaste: AP,AP50" in (tmp_path / "log.txt").read_text() and (tmp_path / "model_final.pth").exists()
    assert lazy_train_net.main([*config, "--resume", *opts, *in_process]) == 0
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 1
    capsys.readouterr()

    # Evaluated again from the config.yaml it saved (read as plain data) and its last checkpoint, by the real entry
    # point, into eval_<time>/: the run's config.yaml and log stay its own (they were replaced and appended to).
    record = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "log.txt")}
    cmd = [
        sys.executable,
        str(ROOT / "tools/lazyconfig_train_net.py"),
        "--config-file",
        str(tmp_path / "config.yaml"),
        "--eval-only",
        "--resume",
        "dataloader.test.dataset.names=rgs_digits_val"  # the builtin name, found under DETECTRON2_DATASETS
    ]
    env = dict(os.environ, DETECTRON2_DATASETS=digits, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    ev = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0 and "copypaste: AP,AP50" in ev.stdout + ev.stderr, ev.stderr[-3000:]
    assert {name: (tmp_path / name).read_bytes() for name in record} == record
    (evaluation, ) = tmp_path.glob("eval_*")
    assert "copypaste: AP,AP50" in (evaluation / "log.txt").read_text() and (evaluation / "config.yaml").exists()


def test_lazy_train_net_help_says_a_lazyconfig_is_code(capsys):
    with pytest.raises(SystemExit) as done:
        lazy_train_net.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "A ``.py`` LazyConfig is a Python file, and loading it runs it" in text
    assert "treat it like code you run" in text and "Change some config options" not in text  # yacs epilog
    assert "``.yaml`` LazyConfig (the ``config.yaml`` a run saves) is read as plain data" in text
    assert "``_target_`` keys still name the functions that build the model" in text


def test_lazy_config_mistakes_are_one_line(tmp_path, capsys):
    assert lazy_train_net.main(["--config-file", str(tmp_path / "nope.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert lazy_train_net.main(["--config-file", LAZY_FPN, "train.max_iter"]) == 2
    assert "bad override" in capsys.readouterr().err
    cfg_file = tmp_path / "partial.py"
    cfg_file.write_text("model = dict(a=1)\n")
    assert lazy_train_net.main(["--config-file", str(cfg_file)]) == 2
    assert "has no train, dataloader, optimizer, lr_multiplier" in capsys.readouterr().err
    cfg_file.write_text("model = dict(a=1)\ntrain = dict(max_iter=1)\ndataloader = dict(train=1)\n"
                        "optimizer = dict()\nlr_multiplier = dict()\n")
    assert lazy_train_net.main(["--config-file", str(cfg_file)]) == 2
    assert "has no train.output_dir" in capsys.readouterr().err
    argv = [
        "--config-file", LAZY_FPN, "--eval-only", "train.init_checkpoint=", "train.device=cpu",
        f"train.output_dir={tmp_path}"
    ]
    assert lazy_train_net.main(argv) == 2
    assert "randomly initialised model" in capsys.readouterr().err


TINY_LAZY = [
    "rgsnet.depth=26", "rgsnet.width_mult=0.25", "rgsnet.norm=BN", "train.device=cpu", "train.max_iter=1",
    "train.init_checkpoint=", "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0", f"dataloader.train.dataset.names={PREFIX}_train",
    f"dataloader.test.dataset.names={PREFIX}_val"
]  # tiny, should a check let the run start


def test_lazy_config_with_more_classes_than_the_test_set_is_refused(digits, tmp_path, capsys):
    argv = ["--config-file", LAZY_FPN, *TINY_LAZY, "model.roi_heads.num_classes=20", f"train.output_dir={tmp_path}"]
    assert lazy_train_net.main(argv) == 2
    err = capsys.readouterr().err
    assert f"test dataset '{PREFIX}_val' has 10 classes" in err and "set model.roi_heads.num_classes=10" in err


def test_lazy_train_net_never_replaces_a_finished_model_without_overwrite(digits, tmp_path, capsys):
    (tmp_path / "model_final.pth").write_bytes(b"a finished model")
    argv = ["--config-file", LAZY_FPN, *TINY_LAZY, "model.roi_heads.num_classes=10", f"train.output_dir={tmp_path}"]
    assert lazy_train_net.main(argv) == 2
    assert "holds another run (model_final.pth)" in capsys.readouterr().err
    assert (tmp_path / "model_final.pth").read_bytes() == b"a finished model"


@pytest.mark.parametrize("overrides,words", [
    (["train.max_itr=5"], "'train.max_itr=5': train.max_itr is not a key of this LazyConfig; did you mean "
     "train.max_iter?"),
    (["trian.max_iter=5"], "trian is not a key of this LazyConfig; did you mean train?"),
    (["dataloader.train.mapper.recompute_boxs=True"], "did you mean dataloader.train.mapper.recompute_boxes"),
    (["train.device=cpu", "train.max_iter", "5"], "bad override 'train.max_iter': LazyConfig overrides are key=value, "
     "e.g. train.max_iter=5"),
    (["MODEL.DEVICE", "cpu"], "e.g. MODEL.DEVICE=cpu (KEY VALUE pairs are for yaml configs and train_net)"),
])
def test_lazy_overrides_name_keys_the_config_has(tmp_path, capsys, overrides, words):
    """A typo'd key is refused with its near matches (it was added and never read); a yacs-style KEY VALUE is pointed
    at and shown as key=value."""
    argv = ["--config-file", LAZY_FPN, *TINY_LAZY, *overrides, f"train.output_dir={tmp_path}"]
    assert lazy_train_net.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lazy_train_net: error: bad override") and words in err, err
    assert not list(tmp_path.iterdir())  # nothing was started


@pytest.mark.parametrize("overrides,words", [
    (["train.max_iter=abc"], "train.max_iter = 'abc' is invalid: give a whole number of 1 or more"),
    (["dataloader.train.total_batch_size=0"], "dataloader.train.total_batch_size = 0 is invalid: give a whole number"),
    (["train.checkpointer.period=0"], "train.checkpointer.period = 0 is invalid: give a whole number of 1 or more"),
    (["train.eval_period=-1"], "train.eval_period = -1 is invalid: give a whole number of 0 or more"),
    (["train.output_dir="], "train.output_dir is empty: name the folder for the run's files"),
    (["dataloader.train.total_batch_size=3", "--num-gpus", "2"], "total_batch_size = 3 does not divide among 2"),
])
def test_lazy_train_values_are_refused_before_anything_is_built(digits, tmp_path, capsys, overrides, words):
    """The LazyConfig counterparts of the yacs trainer's SOLVER checks (a TypeError, an AssertionError in the loader, a
    ZeroDivisionError in the checkpointer's hook, or a run into the current folder): one line naming the key."""
    flags = overrides[1:] if len(overrides) > 1 and overrides[1].startswith("--") else []
    overrides = overrides[:len(overrides) - len(flags)]
    output = [] if overrides[0].startswith("train.output_dir") else [f"train.output_dir={tmp_path / 'o'}"]
    argv = ["--config-file", LAZY_FPN, *flags, *TINY_LAZY, "model.roi_heads.num_classes=10", *output, *overrides]
    assert lazy_train_net.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lazy_train_net: error: ") and words in err and "Traceback" not in err, err[-3000:]
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_lazy_overrides_may_set_what_the_target_takes_or_add_on_purpose():
    from rgs_detectron.config import load_lazy_config

    cfg = load_lazy_config(
        LAZY_FPN,
        [
            "dataloader.train.mapper.recompute_boxes=True",  # a parameter of the mapper left at its default
            "model.roi_heads.box_predictor.test_topk_per_image=50",
            "+train.note=mine",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[64]"
        ])
    assert cfg.dataloader.train.mapper.recompute_boxes and cfg.train.note == "mine"
    assert cfg.model.roi_heads.box_predictor.test_topk_per_image == 50


def test_evaluators_follow_detectron2s_evaluator_types():
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import SemSegEvaluator

    from rgs_detectron import get_rgsnet_cfg
    from rgs_detectron.engine import build_evaluator

    if "rgs_test_semseg" not in DatasetCatalog.list():
        DatasetCatalog.register("rgs_test_semseg", lambda: [])
        MetadataCatalog.get("rgs_test_semseg").set(evaluator_type="sem_seg", stuff_classes=["a", "b"], ignore_label=255)
        DatasetCatalog.register("rgs_test_unknown_eval", lambda: [])
        MetadataCatalog.get("rgs_test_unknown_eval").set(evaluator_type="mystery")
    cfg = get_rgsnet_cfg()
    assert isinstance(build_evaluator(cfg, "rgs_test_semseg", "/tmp/rgs_eval"), SemSegEvaluator)
    with pytest.raises(ConfigError, match=r"evaluator_type 'mystery', which no evaluator here takes \(known: coco, "):
        build_evaluator(cfg, "rgs_test_unknown_eval")


@pytest.mark.slow
def test_a_plain_install_finds_its_configs_without_the_checkout(tmp_path):
    """pip builds a wheel and installs it into a folder; from elsewhere, with no checkout on the
    path, the model zoo finds and merges the packaged yaml and LazyConfig."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(wheels),
         str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel, ) = wheels.glob("rgs_detectron-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target",
         str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    code = ("import rgs_detectron, sys; from rgs_detectron import model_zoo\n"
            "assert rgs_detectron.__file__.startswith(sys.argv[1]), rgs_detectron.__file__\n"
            "cfg = model_zoo.get_config('coco_res_rgs_50.yaml')\n"
            "assert cfg.MODEL.RGSNET.VARIANT == 'Res-RGS' and cfg.SOLVER.MAX_ITER == 36646\n"
            "lazy = model_zoo.get_config('lazy/voc_res_rgs_50_c4.py')\n"
            "print('found', model_zoo.get_config_file('coco_res_rgs_50.yaml'), lazy.model.roi_heads.num_classes)\n")
    run = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(site)), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"found {site}" in run.stdout and run.stdout.strip().endswith(" 20")


@pytest.mark.parametrize("config", [
    "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml", "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml",
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
])
def test_detectron2_yaml_configs_take_the_backbone_with_two_lines(config):
    """The README's two lines in Detectron2's own Cascade, Keypoint, Panoptic FPN and Mask R-CNN configs."""
    from detectron2.modeling import build_model

    from rgs_detectron import get_rgsnet_cfg

    cfg = get_rgsnet_cfg(d2_model_zoo.get_config_file(config), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    cfg.MODEL.BACKBONE.NAME = "build_rgsnet_fpn_backbone"
    cfg.MODEL.RGSNET.VARIANT = "Res-RGS"
    model = build_model(cfg).eval()
    assert type(model.backbone.bottom_up).__name__ == "RGSNet"
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)}])
    assert out and ("instances" in out[0] or "panoptic_seg" in out[0])
