"""The architecture record that travels with an RGSNet's tensors, into any loader.

Twin variants (d-RGS and Res-RGS, b-RGS and GS) hold exactly the same tensors: names and
shapes cannot tell their weights apart. So an RGSNet backbone and the C4 head's res5
(:class:`CarriesSpec`) hold their ``RGSNetSpec`` as module extra state: ``state_dict()``
puts it beside the tensors under ``<prefix>_extra_state``, every checkpoint and converted
file carries it, and every ``load_state_dict`` (Detectron2's ``DetectionCheckpointer``,
``DefaultTrainer.resume_or_load`` and LazyConfig training included) compares it with the
module's spec before the module's tensors load, refusing a difference naming both.

Why a uint8 tensor of one fixed shape (JSON text, zero-padded): fvcore's checkpointer
refuses a state dict holding anything but tensors, and skips with only a warning a tensor
whose shape differs from the model's (docs/GUARANTEES.md says what that leaves to
Detectron2's own loader).

:func:`read_record` is the one reader of recorded specs: this record, and the
``rgsnet_spec`` mapping of classifier checkpoints (and of files written before the record
travelled with the tensors), for the converter, the checkpointer and pretraining resume.
A malformed record is refused naming where it was found and the field; a missing field
is an error, never a default.
"""
import dataclasses
import json
import logging

import torch

from ..errors import ConfigError, WeightsError, shown
from .spec import CFG_KEYS, RGSNetSpec
from .variants import twin_of

__all__ = ["CarriesSpec", "IncompatibleCheckpointError", "encode_record", "read_record", "refuse_other_spec"]

logger = logging.getLogger(__name__)

RECORD_KEY = "_extra_state"  # torch's name for a module's extra state in a state dict
RECORD_BYTES = 512
# What decides an RGSNet's tensors or the function they compute: recorded and compared. Not: norm (FrozenBN
# after BN pretraining is the normal fine-tuning), shortcut_impl (the same function computed another way),
# rg_init (only where training starts), res5_dilation (a fine-tuning choice, as Detectron2 makes it).
RECORDED_FIELDS = ("variant", "block", "blocks_per_stage", "stem_channels", "res2_out_channels", "num_groups",
                   "width_per_group", "gn_groups", "se_reduction", "stride_in_1x1", "stem", "in_channels")


class IncompatibleCheckpointError(WeightsError):
    """The weights do not fit the model (``RGSCheckpointer`` leaves the model as it was)."""


def _recorded(spec):
    return {**{f: getattr(spec, f) for f in RECORDED_FIELDS}, "variant": str(spec.variant)}


def encode_record(spec: RGSNetSpec):
    """The record of ``spec``: its :data:`RECORDED_FIELDS` as JSON in :data:`RECORD_BYTES` uint8 (CPU)."""
    text = json.dumps(_recorded(spec)).encode()  # at most ~300 bytes (9999 blocks a stage, 262144 channels: 292)
    return torch.frombuffer(bytearray(text.ljust(RECORD_BYTES, b"\0")), dtype=torch.uint8)


def _malformed(where, what):
    return WeightsError(f"{where}: the recorded architecture {what}. The file is damaged, forged or written by another "
                        "version: make it again (convert, or the run that saved it)")


def read_record(value, where):
    """The ``RGSNetSpec`` a record holds, or None for no record (``value`` None).

    ``value`` is the record tensor (its :data:`RECORDED_FIELDS`; the spec's other fields take
    their defaults, which nothing compares) or a ``to_dict()`` mapping (every field). ``where``
    names the file and key in errors.
    """
    if value is None:
        return None
    required = RECORDED_FIELDS if isinstance(value, torch.Tensor) else [f.name for f in dataclasses.fields(RGSNetSpec)]
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.uint8 or tuple(value.shape) != (RECORD_BYTES, ):
            raise _malformed(
                where, f"is a {value.dtype} tensor of shape {tuple(value.shape)}, not the "
                f"{RECORD_BYTES}-byte record")
        try:
            value = json.loads(bytes(value.tolist()).rstrip(b"\0"))
        except ValueError:
            raise _malformed(where, "is not the JSON text of a record") from None
    if not isinstance(value, dict):
        raise _malformed(where, f"is a {type(value).__name__}, not a mapping of RGSNetSpec fields")
    missing = [f for f in required if f not in value]
    if missing:
        raise _malformed(where, "lacks " + ", ".join(missing))
    try:
        return RGSNetSpec(**value)
    except (ConfigError, TypeError) as e:  # a field it does not know (TypeError) or a value it refuses
        raise _malformed(where, f"is invalid: {str(e)[:500]}") from None


def refuse_other_spec(recorded: RGSNetSpec, spec: RGSNetSpec, what, source=None, holder="the model"):
    """Raise :class:`IncompatibleCheckpointError` naming what differs first, when weights recorded as ``recorded``
    (read from the file ``source``, if known) do not fit ``what`` of ``holder`` (a model's part, a target)."""
    theirs, ours = _recorded(recorded), _recorded(spec)
    differences = [(f, theirs[f], ours[f]) for f in RECORDED_FIELDS if theirs[f] != ours[f]]
    if differences:
        fix = " ".join(f"{CFG_KEYS.get(f, f)} {shown(a)}" for f, a, _ in differences)
        raise IncompatibleCheckpointError(
            f"the weights{f' in {source}' if source else ''} do not fit {what}: they differ in " +
            ", ".join(f"{f} ({shown(a)} in the weights, {shown(b)} in {holder})" for f, a, b in differences) +
            f"; they were made for {recorded.variant}-{recorded.depth}, {what} is {spec.variant}-{spec.depth}. "
            f"Use the architecture the weights were made for ({fix}), or weights made for this one.")


class CarriesSpec:
    """For an ``nn.Module`` with a ``spec``: the spec's record as extra state, compared on every load."""

    def get_extra_state(self):
        return encode_record(self.spec)

    def set_extra_state(self, state):
        """Nothing to set: ``_load_from_state_dict`` compared the record before the module's tensors loaded."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, *args):
        key, part = prefix + RECORD_KEY, prefix[:-1] or type(self).__name__
        if key in state_dict:
            refuse_other_spec(read_record(state_dict[key], f"the weights' {key}"), self.spec, f"the model's {part}")
        elif any(k.startswith(prefix) for k in state_dict):
            twin = twin_of(self.spec.variant)
            logger.warning(f"{part}: the weights record no architecture (made elsewhere, or before records): loaded "
                           "by tensor names and shapes" +
                           (f", which cannot tell {self.spec.variant} from {twin} (the same tensors); make sure they "
                            f"were trained as {self.spec.variant}" if twin else ""))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args)
        if key in missing_keys:  # no record: such files load as they did before records
            missing_keys.remove(key)
