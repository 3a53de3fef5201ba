"""The architecture record travels with the tensors: every loader that calls ``load_state_dict``,
Detectron2's own included, refuses weights of a twin variant; one reader refuses a malformed
record naming the file and the field; a refused load leaves the model as it was; a file
without a record says so to the user."""
import itertools
import subprocess
import sys

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.engine import DefaultTrainer
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from rgs_detectron import load_weights
from rgs_detectron.checkpoint import IncompatibleCheckpointError, RGSCheckpointer, convert_checkpoint
from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.errors import WeightsError
from rgs_detectron.model_zoo import get_config
from rgs_detectron.modeling import RGSNetSpec

from common import ROOT, tiny_batch, tiny_detector_cfg

RECORD = "_extra_state"  # torch's key for a module's extra state
TWINS = [("Res-RGS", "d-RGS"), ("GS", "b-RGS")]
LAZY = {"FPN": "lazy/coco_res_rgs_50_fpn.py", "C4": "lazy/coco_res_rgs_50_c4.py"}


def classifier_file(tmp_path, variant, record=None):
    """A train_classifier-style checkpoint of the tiny detectors' backbone (26, 0.25x): weights and ``rgsnet_spec``."""
    spec = RGSNetSpec.create(variant, 26, 0.25)
    path = tmp_path / f"{variant}_classifier.pth"
    torch.save({"state_dict": RGSNetClassifier(spec).state_dict(), "rgsnet_spec": record or spec.to_dict()}, path)
    return path


def converted(tmp_path, variant):
    """ImageNet weights for ``variant``, as the converter writes them."""
    out = tmp_path / f"{variant}_converted.pth"
    convert_checkpoint(str(classifier_file(tmp_path, variant)), str(out))
    return str(out)


def saved(tmp_path, variant, head="FPN", record=True):
    """A detector checkpoint as the trainers save it (``record=False``: without its records, a file made elsewhere)."""
    RGSCheckpointer(build_model(tiny_detector_cfg(variant, head)), str(tmp_path)).save("model_final")
    path = tmp_path / "model_final.pth"
    if not record:
        data = torch.load(path, weights_only=True)
        data["model"] = {k: v for k, v in data["model"].items() if not k.endswith(RECORD)}
        data.pop("rgsnet_spec", None)
        torch.save(data, path)
    return str(path)


class Trainer(DefaultTrainer):  # a user's trainer: Detectron2's own, with their data

    @classmethod
    def build_train_loader(cls, cfg):
        return itertools.repeat(tiny_batch())


def _load(loader, tmp_path, head, variant, weights):
    """Load ``weights`` into a tiny ``variant`` detector as Detectron2's ``loader`` does; returns the model."""
    if loader == "lazyconfig_train_net":  # tools/lazyconfig_train_net.py: DetectionCheckpointer(model).load(...)
        cfg = get_config(LAZY[head])
        cfg.rgsnet.update(variant=variant, depth=26, width_mult=0.25)
        cfg.train.init_checkpoint = weights
        model = instantiate(cfg.model)
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return model
    out = tmp_path / "out"
    cfg = tiny_detector_cfg(variant, head, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(out), "DATASETS.TEST", ())
    if loader == "DetectionCheckpointer":
        model = build_model(cfg)
        DetectionCheckpointer(model).load(weights)
        return model
    resume = loader == "DefaultTrainer.resume_or_load(resume=True)"
    if resume:  # the run's own last checkpoint, in its output folder
        out.mkdir(exist_ok=True)
        (out / "model_final.pth").write_bytes(open(weights, "rb").read())
        (out / "last_checkpoint").write_text("model_final.pth")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer.model


LOADERS = [
    "DetectionCheckpointer", "DefaultTrainer.resume_or_load", "DefaultTrainer.resume_or_load(resume=True)",
    "lazyconfig_train_net"
]


@pytest.mark.parametrize("head", ["FPN", "C4"])
@pytest.mark.parametrize("loader", LOADERS)
def test_detectron2s_own_loaders_refuse_weights_of_a_twin(tmp_path, loader, head):
    """Converted ImageNet weights (backbone only, matching heuristics) and a trained detector (every key) alike."""
    variant, twin = TWINS[0] if loader != "DetectionCheckpointer" else TWINS[1]
    weights = saved(tmp_path, variant, head) if "resume=True" in loader else converted(tmp_path, variant)
    model = _load(loader, tmp_path, head, variant, weights)  # the variant the weights are for loads
    assert any(k.endswith(RECORD) for k in model.state_dict())
    with pytest.raises(IncompatibleCheckpointError) as err:
        _load(loader, tmp_path, head, twin, weights)
    assert f"variant ({variant!r} in the weights, {twin!r} in the model)" in str(err.value)
    assert f"they were made for {variant}-26, the model's " in str(err.value)


def test_the_c4_heads_res5_carries_its_own_record(tmp_path):
    from rgs_detectron.modeling import make_rgsnet_res5

    weights = saved(tmp_path, "Res-RGS", "C4")
    model = build_model(tiny_detector_cfg("Res-RGS", "C4"))
    model.roi_heads.res5 = make_rgsnet_res5(model.backbone.spec.replace(variant="d-RGS"))
    with pytest.raises(IncompatibleCheckpointError, match=r"do not fit the model's roi_heads\.res5: they differ in"):
        DetectionCheckpointer(model).load(weights)


def test_frozen_bn_conversion_keeps_the_record(tmp_path):
    weights = saved(tmp_path, "Res-RGS")
    model = FrozenBatchNorm2d.convert_frozen_batchnorm(
        build_model(tiny_detector_cfg("d-RGS", "FPN", "MODEL.RESNETS.NORM", "BN")))
    with pytest.raises(IncompatibleCheckpointError, match="'Res-RGS' in the weights, 'd-RGS' in the model"):
        DetectionCheckpointer(model).load(weights)


def test_a_file_without_a_record_loads_in_any_loader_with_a_note(tmp_path, caplog):
    weights = saved(tmp_path, "Res-RGS", record=False)
    for load in (lambda m: DetectionCheckpointer(m).load(weights),
                 lambda m: m.load_state_dict(torch.load(weights, weights_only=True)["model"])
                 ):  # strict torch load too: no "missing key"
        caplog.clear()
        load(build_model(tiny_detector_cfg("d-RGS")))
        assert "backbone.bottom_up: the weights record no architecture" in caplog.text
        assert "cannot tell d-RGS from Res-RGS" in caplog.text


def _with_record(path, key, value):
    data = torch.load(path, weights_only=True)
    data["model"][key] = value
    torch.save(data, path)


def test_a_record_of_another_shape_is_refused_by_our_loader(tmp_path, caplog):
    """fvcore skips, with a warning, a tensor whose shape differs from the model's: Detectron2's own
    loader can only note that the record is missing (docs/GUARANTEES.md); ours refuses it first."""
    weights = saved(tmp_path, "Res-RGS")
    key = f"backbone.bottom_up.{RECORD}"
    _with_record(weights, key, torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(
            WeightsError, match=rf"model_final.pth': {key}: the recorded architecture is a torch.uint8 "
            r"tensor of shape \(3,\), not the 512-byte record"):
        load_weights(build_model(tiny_detector_cfg("Res-RGS")), weights)
    DetectionCheckpointer(build_model(tiny_detector_cfg("Res-RGS"))).load(weights)
    assert "Skip loading parameter" in caplog.text and "the weights record no architecture" in caplog.text


@pytest.mark.parametrize("record,words", [
    ("Res-RGS", "rgsnet_spec: the recorded architecture is a str, not a mapping"),
    (["d-RGS"], "rgsnet_spec: the recorded architecture is a list, not a mapping"),
    (torch.ones(3), "rgsnet_spec: the recorded architecture is a torch.float32 tensor of shape (3,)"),
    ("no variant", "rgsnet_spec: the recorded architecture lacks variant"),
    ("a wrong variant", "rgsnet_spec: the recorded architecture is invalid: variant (MODEL.RGSNET.VARIANT) = "
     "'e-RGS' is invalid"),
    ("an unknown field", "rgsnet_spec: the recorded architecture is invalid: RGSNetSpec.__init__() got an "
     "unexpected keyword argument 'color'"),
])
def test_a_malformed_record_is_refused_naming_the_file_and_the_field(tmp_path, record, words):
    """A record that is not a mapping was "no record"; a missing variant was filled with the default."""
    full = RGSNetSpec.create("d-RGS", 26, 0.25).to_dict()
    record = {
        "no variant": {k: v for k, v in full.items() if k != "variant"},
        "a wrong variant": {**full, "variant": "e-RGS"}, "an unknown field": {**full, "color": "red"}
    }.get(record, record) if isinstance(record, str) else record
    weights = saved(tmp_path, "d-RGS", record=False)
    data = torch.load(weights, weights_only=True)
    torch.save({**data, "rgsnet_spec": record}, weights)
    model = build_model(tiny_detector_cfg("Res-RGS"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_weights(model, weights)
    assert f"{weights!r}: {words}" in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_one_reader_one_error_for_the_converter_the_checkpointer_and_pretraining_resume(tmp_path, capsys):
    """The same record without its variant: exit status 1 and the same words from each (the converter said
    status 2 and blamed MODEL.RGSNET.VARIANT, the checkpointer filled in Res-RGS, resume did as well)."""
    from detectron2.utils.logger import setup_logger

    from rgs_detectron.cli import convert as convert_tool
    from rgs_detectron.cli import train_classifier

    setup_logger(name="rgs_detectron", abbrev_name="rgs")
    spec = RGSNetSpec.create("d-RGS", 26, 0.25).to_dict()
    no_variant = {k: v for k, v in spec.items() if k != "variant"}
    words = "rgsnet_spec: the recorded architecture lacks variant"
    src = classifier_file(tmp_path, "d-RGS", record=no_variant)
    assert convert_tool.main([str(src), str(tmp_path / "out.pth")]) == 1
    assert f"{src}: {words}" in capsys.readouterr().err and not (tmp_path / "out.pth").exists()

    run = tmp_path / "run"
    argv = [
        "--dataset", "digits", "--depth", "26", "--width-mult", "0.25", "--variant", "d-RGS", "--recipe", "cifar",
        "--workers", "0", "--no-progress", "--device", "cpu", "--image-size", "16", "--batch-size", "32",
        "--limit-train", "32", "--limit-val", "32", "--epochs", "1", "--output",
        str(run)
    ]
    assert train_classifier.main(argv) == 0
    last = torch.load(run / "last.pth", weights_only=True)
    torch.save({**last, "rgsnet_spec": no_variant}, run / "last.pth")
    assert train_classifier.main([*argv, "--resume"]) == 1
    assert f"{run / 'last.pth'}: {words}" in capsys.readouterr().err

    weights = saved(tmp_path, "d-RGS", record=False)
    torch.save({**torch.load(weights, weights_only=True), "rgsnet_spec": no_variant}, weights)
    with pytest.raises(WeightsError, match=f"{weights}': {words}"):
        load_weights(build_model(tiny_detector_cfg("Res-RGS")), weights)


def test_a_huge_string_in_a_forged_record_is_cut_in_every_message(tmp_path, capsys):
    from rgs_detectron.cli import convert as convert_tool

    huge = "x" * 5_000_000
    forged = {**RGSNetSpec.create("d-RGS", 26, 0.25).to_dict(), "variant": huge}
    weights = saved(tmp_path, "d-RGS", record=False)
    torch.save({**torch.load(weights, weights_only=True), "rgsnet_spec": forged}, weights)
    with pytest.raises(WeightsError) as err:
        load_weights(build_model(tiny_detector_cfg("d-RGS")), weights)
    assert len(str(err.value)) < 1000 and "'xxxxxxxxxxxx...xxxxxxxxxxxxx'" in str(err.value)
    assert convert_tool.main([str(classifier_file(tmp_path, "d-RGS", record=forged)), str(tmp_path / "o.pth")]) == 1
    err = capsys.readouterr().err
    assert len(err) < 1000 and "'xxxxxxxxxxxx...xxxxxxxxxxxxx'" in err


@pytest.mark.parametrize("case", ["another variant's record", "a partial backbone", "untrained heads"])
def test_a_refused_load_leaves_the_model_as_it_was(tmp_path, case):
    """The checkpointer copied the matching tensors before refusing (29 of 222 changed in one case)."""
    if case == "another variant's record":
        weights, complete = saved(tmp_path, "Res-RGS"), False
    elif case == "a partial backbone":
        weights, complete = saved(tmp_path, "d-RGS", record=False), False
        data = torch.load(weights, weights_only=True)
        data["model"] = {k: v for k, v in data["model"].items() if ".res4.1." not in k}
        torch.save(data, weights)
    else:
        weights, complete = converted(tmp_path, "d-RGS"), True
    torch.manual_seed(1)
    model = build_model(tiny_detector_cfg("d-RGS"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(IncompatibleCheckpointError):
        load_weights(model, weights, complete=complete)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == []


def test_the_no_record_note_reaches_a_load_weights_user(tmp_path):
    """A user's script with no logging set up: the note is on stderr (it was an INFO line no one saw)."""
    weights = saved(tmp_path, "Res-RGS", record=False)
    script = ("import sys; sys.path.insert(0, 'tests'); from common import tiny_detector_cfg; "
              "from detectron2.modeling import build_model; import rgs_detectron; "
              f"rgs_detectron.load_weights(build_model(tiny_detector_cfg('d-RGS')), {weights!r})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "the weights record no architecture" in done.stderr and "cannot tell d-RGS from Res-RGS" in done.stderr


def test_the_no_record_note_reaches_a_command_user(tmp_path, capsys):
    from rgs_detectron.cli import train_net

    weights = saved(tmp_path, "Res-RGS", record=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_detector_cfg("d-RGS").dump())
    assert train_net.main([
        "--config-file",
        str(config), "--eval-only", "MODEL.WEIGHTS", weights, "DATASETS.TEST", "()", "OUTPUT_DIR",
        str(tmp_path / "eval")
    ]) == 0
    printed = capsys.readouterr()
    assert "cannot tell d-RGS from Res-RGS" in printed.out + printed.err


def test_a_backbone_cut_from_a_state_dict_by_hand_serves_a_c4_model_in_our_loader(tmp_path):
    """One record, ``_extra_state``: Detectron2's heuristics cannot give it to both C4 parts; ours gives it to both."""
    prefix = "backbone.bottom_up."
    state = {
        k[len(prefix):]: v for k, v in build_model(tiny_detector_cfg("Res-RGS")).state_dict().items()
        if k.startswith(prefix)
    }
    torch.save({"model": state, "matching_heuristics": True}, tmp_path / "backbone.pth")
    weights = str(tmp_path / "backbone.pth")
    load_weights(build_model(tiny_detector_cfg("Res-RGS", "C4")), weights)
    with pytest.raises(IncompatibleCheckpointError, match="do not fit the model's backbone: they differ in variant"):
        load_weights(build_model(tiny_detector_cfg("d-RGS", "C4")), weights)
    with pytest.raises(ValueError, match="Cannot match one checkpoint key to multiple keys"):
        DetectionCheckpointer(build_model(tiny_detector_cfg("Res-RGS", "C4"))).load(weights)
