"""Every shipped config loads and builds; the C4/FPN schedule twins agree; yaml never runs code."""
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_model

from rgs_detectron import RGSNet, get_rgsnet_cfg
from rgs_detectron.checkpoint.conversion_report import PYTORCH_INPUT_SETTINGS, config_conflicts
from rgs_detectron.classification.datasets import IMAGENET_MEAN, IMAGENET_STD
from rgs_detectron.config import num_classes
from rgs_detectron.errors import ConfigError
from rgs_detectron.model_zoo import get_config, get_config_file, list_configs

from common import rgs_cfg, tool_module

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
CONFIGS = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml") if not p.name.startswith("Base-"))
TRAIN_IMAGES = {"coco": 117_266, "voc": 5_011}  # with annotations: train2014 + valminusminival2014; trainval


def test_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    assert len(CONFIGS) >= 20  # found wherever pytest runs from
    for ds in ("coco", "voc"):
        for v in ("original", "b_rgs", "d_rgs", "res_rgs"):
            assert f"{ds}_{v}_50.yaml" in names and f"{ds}_{v}_50_fpn.yaml" in names


VARIANTS_IN_NAMES = {"original": "original", "b_rgs": "b-RGS", "d_rgs": "d-RGS", "res_rgs": "Res-RGS"}


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads_and_builds(path):
    """Each builds the variant its name says, with the class count of the data it is tested on; the ones that
    fine-tune ImageNet weights take the input and layout torchvision-style weights need (the ImageNet mean and std
    held equal to the one place they are written, through the converter's settings)."""
    cfg = rgs_cfg(base=str(CONFIG_DIR / path))
    model = build_model(cfg)
    (backbone, ) = [m for m in model.modules() if isinstance(m, RGSNet)]
    named = re.search(r"_(original|b_rgs|d_rgs|res_rgs)[_.]", os.path.basename(path)).group(1)
    assert backbone.spec.variant.name == VARIANTS_IN_NAMES[named]
    assert num_classes(cfg)[1] == len(MetadataCatalog.get(cfg.DATASETS.TEST[0]).thing_classes)
    if "demo" not in path:
        assert PYTORCH_INPUT_SETTINGS["MODEL.PIXEL_MEAN"] == [round(255 * v, 3) for v in IMAGENET_MEAN]
        assert config_conflicts(cfg) == []  # INPUT.FORMAT, MODEL.PIXEL_MEAN/STD, STRIDE_IN_1X1, a BN-type norm
        assert cfg.MODEL.WEIGHTS.startswith("checkpoints/imagenet/")
        expected = {"coco": ("coco_2014_minival", ), "voc": ("voc_2007_test", )}[os.path.basename(path).split("_")[0]]
        if "mask_rcnn" in path or "retinanet" in path:  # Detectron2's 1x recipes, not the paper's experiments
            expected = ("coco_2017_val", )
        assert tuple(cfg.DATASETS.TEST) == expected


@pytest.mark.parametrize("ds", ["COCO2014-5ep", "VOC2007-10ep"])
def test_c4_and_fpn_share_data_and_schedule(ds):
    c4 = rgs_cfg(base=str(CONFIG_DIR / f"Base-{ds}-C4.yaml"))
    fpn = rgs_cfg(base=str(CONFIG_DIR / f"Base-{ds}-FPN.yaml"))
    for node in ("DATASETS", "SOLVER", "INPUT"):
        assert c4[node] == fpn[node], node
    assert c4.MODEL.ROI_HEADS.NUM_CLASSES == fpn.MODEL.ROI_HEADS.NUM_CLASSES


@pytest.mark.parametrize("name", [n for n in list_configs() if n.endswith(".py") and "lsj" not in n])
def test_lazy_configs_take_the_input_torchvision_style_weights_need(name):
    """The LazyConfig bases state the ImageNet mean and std again: held equal to the one place they are written (the
    LSJ recipe trains from scratch with Detectron2's own input settings)."""
    model = get_config(name).model
    assert model.input_format == PYTORCH_INPUT_SETTINGS["INPUT.FORMAT"] == "RGB"
    assert list(model.pixel_mean) == [round(255 * v, 3) for v in IMAGENET_MEAN]
    assert list(model.pixel_std) == [round(255 * v, 3) for v in IMAGENET_STD]


def test_the_checkout_configs_are_the_shipped_ones():
    """configs/ is the package's folder, and list_configs lists every yaml config there but the Base- ones."""
    assert os.path.realpath(CONFIG_DIR) == os.path.realpath(os.path.dirname(get_config_file("coco_res_rgs_50.yaml")))
    assert sorted(CONFIGS) == [n for n in list_configs() if n.endswith(".yaml")]


@pytest.mark.parametrize("config,epochs", [("coco_res_rgs_50.yaml", 5), ("coco_b_rgs_50_fpn.yaml", 5),
                                           ("voc_res_rgs_50.yaml", 10), ("voc_b_rgs_50_fpn.yaml", 10)])
@pytest.mark.parametrize("num_gpus", [1, 2, 4, 8, 16])
def test_documented_commands_train_the_papers_epochs(config, epochs, num_gpus):
    """``train_net --config-file CONFIG --num-gpus N`` (README) trains the paper's epochs for any N:
    Detectron2 scales batch, LR and schedule from SOLVER.REFERENCE_WORLD_SIZE (8)."""
    cfg = DefaultTrainer.auto_scale_workers(rgs_cfg(base=str(CONFIG_DIR / config)), num_gpus)
    images = TRAIN_IMAGES[config.split("_")[0]]
    assert cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH / images == pytest.approx(epochs, rel=2e-3)
    assert cfg.SOLVER.STEPS[0] * cfg.SOLVER.IMS_PER_BATCH / images == pytest.approx(epochs * 0.8, rel=2e-3)
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.02 * cfg.SOLVER.IMS_PER_BATCH / 16)
    assert cfg.SOLVER.IMS_PER_BATCH == 2 * num_gpus


def test_documented_manual_batch_recipe_trains_ten_voc_epochs():
    """docs/TRAINING.md: 'to pick the batch yourself' on VOC, batch 4 on one GPU."""
    opts = [
        "SOLVER.REFERENCE_WORLD_SIZE", 0, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.BASE_LR", 0.005, "SOLVER.MAX_ITER", 12528,
        "SOLVER.STEPS", (10022, ), "SOLVER.WARMUP_ITERS", 400, "SOLVER.CHECKPOINT_PERIOD", 4000
    ]
    cfg = DefaultTrainer.auto_scale_workers(rgs_cfg(*opts, base=str(CONFIG_DIR / "voc_b_rgs_50_fpn.yaml")), 1)
    assert cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH / TRAIN_IMAGES["voc"] == pytest.approx(10, rel=1e-3)
    assert cfg.SOLVER.STEPS[0] * cfg.SOLVER.IMS_PER_BATCH / TRAIN_IMAGES["voc"] == pytest.approx(8, rel=1e-3)
    assert "SOLVER.MAX_ITER 12528 SOLVER.STEPS \"(10022,)\"" in (ROOT / "docs" / "TRAINING.md").read_text()


PAYLOAD = 'SEED: !!python/object/apply:os.system ["touch {marker}"]\n'


@pytest.mark.parametrize("inherited", [False, True], ids=["in_the_file", "in_its_base"])
def test_a_yaml_config_never_runs_code(tmp_path, inherited):
    """Detectron2 falls back to yaml.unsafe_load; here a Python tag is refused, in the file or its _BASE_."""
    marker = tmp_path / "MARKER"
    payload = tmp_path / ("base.yaml" if inherited else "config.yaml")
    payload.write_text(PAYLOAD.format(marker=marker))
    config = tmp_path / "config.yaml"
    if inherited:
        config.write_text('_BASE_: "base.yaml"\nSOLVER:\n  MAX_ITER: 5\n')
    with pytest.raises(ConfigError) as err:
        get_rgsnet_cfg(str(config))
    assert not marker.exists()
    message = str(err.value)
    assert f"{payload.name}, line 1" in message and "the yaml tag !!python/object/apply:os.system is refused" in message
    assert ("inherited by" in message) == inherited


@pytest.fixture
def cuda_usable(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_the_device_option_overrides_only_when_given(cuda_usable):
    """One rule for demo, export and analyze: --device when given, else MODEL.DEVICE (with CUDA usable,
    MODEL.DEVICE cpu ran on cuda: --device defaulted to auto and always won)."""
    import argparse

    from rgs_detectron.engine.defaults import load_cfg
    from rgs_detectron.utils.commandline import add_config_args

    parser = add_config_args(argparse.ArgumentParser())
    config = str(CONFIG_DIR / "demo" / "digits_res_rgs.yaml")

    def device(*argv):
        return load_cfg(parser.parse_args(["--config-file", config, *argv])).MODEL.DEVICE

    assert device("MODEL.DEVICE", "cpu") == "cpu"
    assert device("--device", "cpu", "MODEL.DEVICE", "cuda") == "cpu"
    assert device("MODEL.DEVICE", "auto") == device("--device", "auto") == device() == "cuda"


def test_digits_demo_and_benchmark_follow_the_same_rule(cuda_usable, monkeypatch, tmp_path):
    """Their shipped configs name no device: --device, else MODEL.DEVICE among the overrides, else auto."""
    from rgs_detectron.cli import digits_demo

    benchmark = tool_module("benchmark")

    seen = []
    monkeypatch.setattr("rgs_detectron.data.digits.generate_digits_dataset", lambda root: None)
    monkeypatch.setattr(digits_demo, "run_one", lambda args, device, *rest: seen.append(device))
    assert digits_demo.main(["--output", str(tmp_path), "MODEL.DEVICE", "cpu"]) == 0
    assert digits_demo.main(["--output", str(tmp_path)]) == 0
    assert seen == ["cpu", "cuda"]

    class Measured(Exception):
        pass

    def measure(args, *rest):
        seen.append(args.device)
        raise Measured

    monkeypatch.setattr(benchmark, "_build", measure)
    args = benchmark.get_parser().parse_args(["--batch", "1", "--input-size", "32", "32", "MODEL.DEVICE", "cpu"])
    with pytest.raises(Measured):
        benchmark.run(args)
    assert seen[-1] == "cpu"


def test_help_prints_no_warning_and_the_light_commands_import_neither_torch_nor_detectron2():
    """Detectron2's import-time deprecation notices (torch.jit.script, ...) are silenced in the command lines;
    the library's own import keeps every warning as it is."""
    train_net = subprocess.run([sys.executable, "-m", "rgs_detectron.cli.train_net", "--help"], capture_output=True,
                               text=True, cwd=ROOT)
    assert train_net.returncode == 0 and "--config-file" in train_net.stdout
    assert "Warning" not in train_net.stdout + train_net.stderr, train_net.stderr
    code = ("import sys; from rgs_detectron.cli import demo, make_digits, make_coco_minival\n"
            "for command in (demo, make_digits, make_coco_minival):\n"
            "    try:\n"
            "        command.main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('heavy:', sorted(m for m in ('torch', 'detectron2') if m in sys.modules))")
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert light.returncode == 0 and "heavy: []" in light.stdout, light.stdout + light.stderr


def test_the_fx_tracing_notice_detectron2s_pooler_draws_is_silenced_in_commands_only():
    """torch logs 'is_fx_tracing will return true ...' once a process when Detectron2's ROI pooler asks (every
    train_net, demo and eval run): silenced in the command lines, as the deprecation warnings are."""
    import logging

    from torch.fx import _symbolic_trace

    from rgs_detectron.utils.commandline import quiet_third_party_deprecations

    if not hasattr(_symbolic_trace, "is_fx_tracing_warning"):
        pytest.skip("this torch logs no is_fx_tracing notice")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger(_symbolic_trace.__name__)
    logger.addHandler(handler)
    try:
        for quiet in (True, False):
            _symbolic_trace.is_fx_tracing_warning.cache_clear()
            with quiet_third_party_deprecations() if quiet else contextlib.nullcontext():
                _symbolic_trace.is_fx_tracing()
            assert bool(seen) != quiet, seen
    finally:
        logger.removeHandler(handler)


# --------------------------------------------------------------------------- every yaml is read as plain data


def test_a_lazyconfig_yaml_never_runs_code(tmp_path, capsys):
    """Detectron2's LazyConfig.load reads .yaml with yaml.unsafe_load: a !!python tag ran, also from a run's own
    config.yaml re-evaluated with --eval-only (exit 0). Read as plain data, it is refused in one line."""
    from rgs_detectron.cli import lazy_train_net
    from rgs_detectron.config import load_lazy_config

    marker = tmp_path / "PWNED"
    evil = tmp_path / "config.yaml"
    evil.write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match=r"config.yaml, line 1: the yaml tag !!python/object/apply:os.system is ref"):
        load_lazy_config(str(evil))
    assert lazy_train_net.main(["--config-file", str(evil), "--eval-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lazy_train_net: error: config file ") and len(err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("name", [n for n in list_configs() if n.endswith(".py") and "lsj" not in n])
def test_the_config_yaml_a_lazy_run_saves_reads_back_as_data(tmp_path, name):
    """What a run of each shipped LazyConfig saves (Detectron2's LazyConfig.save) is plain data the safe reader takes
    back, the same config (the FPN heads' input shapes were ShapeSpec objects: !!python tags). The LSJ Mask R-CNN
    config holds a lambda, which Detectron2 itself cannot save as yaml."""
    from detectron2.config import LazyConfig

    from rgs_detectron.config import load_lazy_config
    from rgs_detectron.model_zoo import get_config

    saved, again = tmp_path / "config.yaml", tmp_path / "again.yaml"
    LazyConfig.save(get_config(name), str(saved))
    assert "!!python" not in saved.read_text()
    LazyConfig.save(load_lazy_config(str(saved)), str(again))
    assert again.read_text() == saved.read_text()


def test_a_key_given_twice_is_refused_naming_the_file_and_the_key(tmp_path):
    """yaml keeps the last of two MODEL: blocks without a word: the variant set in the first was dropped."""
    from rgs_detectron.config import load_lazy_config

    config = tmp_path / "twice.yaml"
    config.write_text("MODEL:\n  RGSNET:\n    VARIANT: b-RGS\nSOLVER:\n  MAX_ITER: 5\nMODEL:\n  DEVICE: cpu\n")
    with pytest.raises(ConfigError) as err:
        get_rgsnet_cfg(str(config))
    assert str(err.value).startswith(f"config file {config}, line 6: the key 'MODEL' is given twice in one mapping")
    config.write_text("train:\n  max_iter: 5\n  output_dir: out\n  max_iter: 10\n")
    with pytest.raises(ConfigError, match="twice.yaml, line 4: the key 'max_iter' is given twice"):
        load_lazy_config(str(config))
    config.write_text("base: &base {DEVICE: cpu}\nMODEL:\n  <<: *base\n  DEVICE: cuda\n")  # a merge key may override
    with pytest.raises(ConfigError, match="Non-existent config key: base"):
        get_rgsnet_cfg(str(config))


LAUGHS = [f"&l{i} [{', '.join([f'*l{i - 1}' if i else '0'] * 9)}]" for i in range(9)]  # 9**9 values in the last


@pytest.mark.parametrize(
    "reader,text",
    [
        ("get_rgsnet_cfg", f"MODEL:\n  PIXEL_MEAN: [{', '.join(LAUGHS)}]\n"),  # a key the config has: merged as it is
        ("load_lazy_config", "".join(f"l{i}: {laugh}\n" for i, laugh in enumerate(LAUGHS))),  # OmegaConf expands it
    ])
def test_a_billion_laughs_yaml_is_refused_at_once(tmp_path, reader, text):
    """Nested anchors (a few hundred bytes) expand to 387 million values: accepted by the yacs reader (then expanded
    when the model is built: 86 s and 1.7 GB), expanded by OmegaConf for a LazyConfig. Refused before anything is
    built (in about a second on an idle machine; the timeout only stops a regression, not a timing test); a process of
    its own, so a regression cannot eat the test machine's memory."""
    config = tmp_path / "laughs.yaml"
    config.write_text(text)
    code = f"from rgs_detectron.config import {reader}\n{reader}({str(config)!r})"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("still expanding the anchors after 180 s")
    assert "expand to more than 100,000 values: refused before building them" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("files,words", [
    ({"config.yaml": "_BASE_: config.yaml\n"}, "inherit each other in a cycle: {d}/config.yaml -> _BASE_ "
     "{d}/config.yaml"),
    ({"config.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: config.yaml\n"}, "in a cycle: {d}/config.yaml -> "
     "_BASE_ {d}/b.yaml -> _BASE_ {d}/config.yaml; remove a _BASE_ line"),
    ({"config.yaml": "_BASE_: notes.txt\n", "notes.txt": "my notes\n"}, "config file {d}/notes.txt (inherited by "
     "{d}/config.yaml through _BASE_) holds a value of type str ('my notes'), not a mapping of config keys"),
    ({"config.yaml": "_BASE_: model.pth\n", "model.pth": b"PK\x03\x04\xff\xfe binary"}, "config file {d}/model.pth "
     "(inherited by {d}/config.yaml through _BASE_): not a plain yaml config"),
    ({"config.yaml": "_BASE_: gone.yaml\n"}, "config file {d}/config.yaml: its _BASE_ {d}/gone.yaml does not exist"),
    ({"config.yaml": "- MODEL\n- DEVICE\n"}, "config file {d}/config.yaml holds a value of type list (['MODEL', "
     "'DEVICE']), not a mapping of config keys (KEY: value lines)"),
    ({"config.yaml": "5\n"}, "config file {d}/config.yaml holds a value of type int (5), not a mapping"),
    ({"config.yaml": ""}, "config file {d}/config.yaml holds nothing, not a mapping of config keys"),
    ({"config.yaml": "MODEL:\n  PIXEL_MEAN: [103.5, 116.3]\n"}, "MODEL.PIXEL_MEAN has 2 values but INPUT.FORMAT BGR "
     "images have 3 channels: give one value per channel"),
    ({"config.yaml": "MODEL:\n  PIXEL_STD: [1.0, 1.0, 1.0, 1.0]\n"}, "MODEL.PIXEL_STD has 4 values"),
])
def test_configs_that_cannot_be_one_are_one_line(tmp_path, capsys, files, words):
    """A _BASE_ cycle (RecursionError), a _BASE_ that is no config, a config that is a list, a scalar or empty, pixel
    statistics of the wrong length (a 468-line log and a traceback): train_net says which file or key, in one line."""
    from rgs_detectron.cli import train_net

    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    assert train_net.main(["--config-file", str(tmp_path / "config.yaml"), "OUTPUT_DIR", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train_net: error: ") and len(err.strip().splitlines()) == 1, err[-3000:]
    assert words.format(d=tmp_path) in err, err
    assert not (tmp_path / "o").exists()


def test_an_option_after_the_overrides_says_that_options_go_first(tmp_path, capsys):
    """argparse gives whatever follows the first override to the overrides: '--resume' became a key."""
    from rgs_detectron.cli import lazy_train_net, train_net

    config = str(CONFIG_DIR / "demo" / "digits_res_rgs.yaml")
    assert train_net.main(["--config-file", config, "MODEL.DEVICE", "cpu", "--resume"]) == 2
    assert "train_net: error: --resume comes after the KEY VALUE overrides, where it is read as one: options go " \
        "before the overrides" in capsys.readouterr().err
    lazy = str(CONFIG_DIR / "lazy" / "coco_res_rgs_50_fpn.py")
    assert lazy_train_net.main(["--config-file", lazy, "train.device=cpu", "--eval-only"]) == 2
    assert "--eval-only comes after the key=value overrides" in capsys.readouterr().err
