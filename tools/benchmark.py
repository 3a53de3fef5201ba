#!/usr/bin/env python
"""Side-by-side cost of the RG shortcut: Faster R-CNN with an RGSNet-FPN backbone (a developer tool, as
Detectron2's own tools/benchmark.py: not installed with the package).

Every run measures the plain ResNet (``original``) next to the RGS variants, in the same
process and on the same synthetic data, and reports each model's ratio to it: absolute
numbers move with the machine and its load, ratios measured together do much less.

A model is a variant with a shortcut implementation (``b-RGS/lean``, ``b-RGS/reference``).
What each implementation runs (``rgs_detectron/modeling/shortcuts.py``): ``lean`` trains with
the lean autograd function and infers with the fused forward, ``auto`` infers fused too,
``reference`` runs the plain ops everywhere (the ground truth, and what the code did before
the fused forward). Per model and thread count it measures (``METRICS``):

* inference at batch 1 (``model.eval()``, ``torch.no_grad()``: what ``DefaultPredictor`` and
  the demo run): the whole detector, and backbone + FPN alone (no proposal-dependent work);
* the same with the backbone compiled as ``RGSPredictor(compile=True)`` and the demo's
  ``--compile`` do (the fastest path the docs give);
* the exported detector (``rgs_detectron.export``): traced TorchScript, and ONNX in ONNX
  Runtime on the CPU (both record the reference ops, whatever the implementation);
* training, at the last thread count of ``--threads`` (the figure; inference is the target): one
  step at ``--batch`` (forward with losses, backward, SGD step), backbone + FPN forward and
  backward alone (on CUDA), the bytes autograd saves, and the CUDA memory peak.

Protocol: every model is built once (same seed, same weights); each thread count then warms
every measurement up, and runs ``--rounds`` rounds in which every model is measured once
(``--iters`` times), in an order that rotates from round to round so that slow drifts of the
machine do not all fall on one model. Results are medians over all timed samples, with their
min and max (a ratio closer to 1 than that spread is noise). ``--output`` is a folder; the
report goes to ``benchmark.json`` in it.

Examples::

    # the CPU measurement of docs/BENCHMARK.md (batch 1 / 2 at 800x1216, 1 thread and all)
    python tools/benchmark.py --device cpu --output docs/benchmarks/cpu
    # the GPU measurement (batch 8 at 800x1216; "auto" is the lean shortcut while training on CUDA)
    python tools/benchmark.py --device cuda --shortcut-impl auto reference --rounds 2 --output output/gpu
    # a CPU smoke run
    python tools/benchmark.py --device cpu --batch 1 --input-size 128 160 --rounds 1 --depth 26 \\
        --width-mult 0.25 --skip compile export --output /tmp/bench
"""
import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from contextlib import nullcontext

import torch
from tabulate import tabulate

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from rgs_detectron.config import get_rgsnet_cfg, resolve_device
from rgs_detectron.engine.defaults import requested_device
from rgs_detectron.errors import ConfigError
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling.spec import SHORTCUT_IMPLS, RGSNetSpec
from rgs_detectron.modeling.variants import get_variant
from rgs_detectron.utils.commandline import run_tool
from rgs_detectron.utils.fileio import atomic_write


def saved_activation_bytes(model, forward):
    """(bytes autograd keeps for backward during ``forward()``, its output).

    Distinct storages, without the model's own parameters and buffers (those exist
    whatever autograd saves): the activation memory a training step needs.
    """
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return t  # kept alive as autograd would keep it, so no address is reused while counting

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    return sum(seen.values()), out


def synthetic_batch(n, height, width, num_classes, device, seed):
    """``n`` Detectron2 training dicts: random uint8 images, 3-10 random boxes each."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float32)
    batch = []
    for _ in range(n):
        image = torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8)
        k = int(torch.randint(3, 11, (1, ), generator=g))
        wh = torch.minimum(16 + torch.rand(k, 2, generator=g) * 0.4 * size, size - 1)
        xy = torch.rand(k, 2, generator=g) * (size - wh)
        instances = Instances(
            (height, width),
            gt_boxes=Boxes(torch.cat([xy, xy + wh], dim=1)),
            gt_classes=torch.randint(0, num_classes, (k, ), generator=g),
        )
        # Already on the device: the host-to-device copy is not what is being measured.
        batch.append({"image": image.to(device), "height": height, "width": width, "instances": instances.to(device)})
    return batch


def cpu_model():
    """The CPU's model name as /proc/cpuinfo gives it (else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


BASELINE = "original"
DEFAULT_VARIANTS = ("original", "b-RGS", "Res-RGS")
MEASUREMENTS = ("inference", "compile", "export", "training")
# Per device: the paper-scale GPU measurement (trainable BN, nothing frozen: the GPU targets), and on the CPU
# what users run there (the shipped COCO configs' FrozenBN and FREEZE_AT 2), one thread and all of them.
DEVICE_DEFAULTS = {
    "cuda": dict(batch=8, iters=20, warmup=5, rounds=3, threads=[0], norm="BN", freeze_at=0, shortcut_impl=["auto"],
                 skip=["compile", "export"]),
    "cpu": dict(batch=2, iters=1, warmup=1, rounds=5, threads=[1, 0], norm="FrozenBN", freeze_at=2,
                shortcut_impl=["lean", "reference"], skip=[]),
}
METRICS = {
    "infer_ms_fp32": "whole detector, inference at batch 1, fp32 (median ms)",
    "infer_ms_amp": "whole detector, inference at batch 1, AMP (median ms)",
    "backbone_infer_ms_fp32": "backbone + FPN alone, inference at batch 1, fp32 (median ms)",
    "backbone_infer_ms_amp": "backbone + FPN alone, inference at batch 1, AMP (median ms)",
    "compiled_infer_ms": "whole detector, backbone compiled (RGSPredictor(compile=True)), batch 1, fp32 (median ms)",
    "compiled_backbone_infer_ms": "backbone + FPN compiled, batch 1, fp32 (median ms)",
    "torchscript_ms": "exported traced TorchScript detector, batch 1 (median ms)",
    "onnx_ms": "exported ONNX detector in ONNX Runtime (CPU), batch 1 (median ms)",
    "train_ms_fp32": "training step (forward with losses, backward, SGD step), fp32 (median ms)",
    "train_ms_amp": "training step, AMP (median ms)",
    "backbone_ms_fp32": "backbone + FPN forward and backward only, fp32 (median ms; CUDA)",
    "backbone_ms_amp": "backbone + FPN forward and backward only, AMP (median ms; CUDA)",
    "saved_mb_fp32": "autograd saved tensors in one fp32 training forward (MiB, parameters excluded)",
    "saved_mb_amp": "autograd saved tensors in one AMP training forward (MiB, parameters excluded, "
    "autocast's weight copies included)",
    "peak_mb_fp32": "peak CUDA memory allocated over fp32 training steps (MiB)",
    "peak_mb_amp": "peak CUDA memory allocated over AMP training steps (MiB)",
    "params_m": "parameters (millions)",
}
MB = 2.0**20
_ALL_THREADS = torch.get_num_threads()  # torch's default: every core


class Model:
    """One row: a detector, its exported and compiled forms, and the timed steps of each measurement."""

    def __init__(self, args, variant, impl, batch, amp_dtype, clock):
        torch.manual_seed(args.seed)
        self.model = build_model(build_cfg(args, variant, impl))
        self.device, self.amp_dtype, self.clock = args.device, amp_dtype, clock
        self.batch, self.image = batch, batch[0]["image"]
        # lr 0: a real update's work, same weights every step (no divergence from random weights).
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
        use_scaler = amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device, enabled=use_scaler) if amp_dtype is not None else None
        self.compiled = self.exported = None

    def precisions(self):
        return [("fp32", False)] + ([("amp", True)] if self.amp_dtype is not None else [])

    def _autocast(self, amp):
        return torch.autocast(self.device, dtype=self.amp_dtype) if amp else nullcontext()

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def timed(self, step, iters):
        """Per-iteration times of ``step()``."""
        times = []
        for _ in range(iters):
            self._sync()
            start = self.clock()
            step()
            self._sync()
            times.append(self.clock() - start)
        return times

    def steps(self, measurement, threads):
        """{metric: step} of one measurement; the model in the mode it needs."""
        self.model.train(measurement == "training")
        if measurement == "training":
            steps = {f"train_ms_{tag}": (lambda amp=amp: self.train_step(amp)) for tag, amp in self.precisions()}
            if self.device == "cuda":
                images = self.model.preprocess_image(self.batch).tensor.detach()
                steps.update({
                    f"backbone_ms_{tag}": (lambda amp=amp: self.backbone_step(images, amp))
                    for tag, amp in self.precisions()
                })
            return steps
        tensor = self.model.preprocess_image([{"image": self.image}]).tensor
        if measurement == "compile":
            return {
                "compiled_infer_ms": no_grad(lambda: self.compiled_detector([{"image": self.image}])),
                "compiled_backbone_infer_ms": no_grad(lambda: self.compiled_detector.backbone(tensor)),
            }
        if measurement == "export":
            session = self.exported["onnx"](threads)
            array = self.image.cpu().numpy()
            return {
                "torchscript_ms": no_grad(lambda: self.exported["torchscript"](self.image)),
                "onnx_ms": lambda: session.run(None, {"image": array}),
            }
        steps = {}
        for tag, amp in self.precisions():
            steps[f"infer_ms_{tag}"] = no_grad(lambda amp=amp: self._infer(self.model, [{"image": self.image}], amp))
            steps[f"backbone_infer_ms_{tag}"] = no_grad(lambda amp=amp: self._infer(self.model.backbone, tensor, amp))
        return steps

    def _infer(self, module, inputs, amp):
        with self._autocast(amp):
            return module(inputs)

    def train_step(self, amp):
        with self._autocast(amp):
            losses = sum(self.model(self.batch).values())
        self.optimizer.zero_grad()
        if amp:
            self.scaler.scale(losses).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses.backward()
            self.optimizer.step()

    def backbone_step(self, images, amp):
        """Backbone + FPN forward and backward alone: the RG shortcut's cost without the
        RPN/ROI heads, whose work depends on the (variant-dependent) proposals."""
        with self._autocast(amp):
            loss = sum(f.float().mean() for f in self.model.backbone(images).values())
        self.optimizer.zero_grad()
        (self.scaler.scale(loss) if amp else loss).backward()

    def saved_mb(self, amp):
        self.model.train()
        with self._autocast(amp):
            return saved_activation_bytes(self.model, lambda: self.model(self.batch))[0] / MB

    def compile(self):
        """The detector with its backbone compiled as ``RGSPredictor(compile=True)`` does, compiled here (a shallow
        copy: training keeps the eager backbone)."""
        self.model.eval()
        self.compiled_detector = copy.copy(self.model)
        self.compiled_detector._modules = dict(self.model._modules)
        self.compiled_detector.backbone = torch.compile(self.model.backbone)  # as RGSPredictor(compile=True)
        with torch.no_grad():
            self.compiled_detector([{"image": self.image}])

    def export(self):
        """The detector traced as ``rgs_detectron.export`` traces it: TorchScript, and ONNX run in ONNX Runtime.
        Not compared with eager here (the export tool does that): random weights keep thousands of boxes, which
        ONNX Runtime's own kernels move by a few thousandths of a pixel, past the export's tolerance."""
        from rgs_detectron.export import _references, _trace_onnx, _trace_torchscript

        self.model.eval()
        adapter, names = _references(self.model, [self.image])[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's thousands of expected warnings
            torchscript = _trace_torchscript(adapter, self.image)[1]
            onnx = _trace_onnx(adapter, self.image, names)[0]
        self.exported = {"torchscript": torchscript, "onnx": lambda threads: _onnx_session(onnx, threads)}


def no_grad(step):
    return lambda: _no_grad_call(step)


@torch.no_grad()
def _no_grad_call(step):
    return step()


def _onnx_session(model, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default, every core
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                   help="variants to compare; 'original' is always added as the baseline")
    p.add_argument(
        "--shortcut-impl", nargs="+", choices=SHORTCUT_IMPLS,
        help="MODEL.RGSNET.SHORTCUT_IMPL: one row per RGS variant and value (cpu: lean reference; cuda: auto)")
    p.add_argument("--depth", type=int, default=50, help="MODEL.RESNETS.DEPTH (26, 38, 50, 101, ...)")
    p.add_argument(
        "--width-mult", type=float, default=1.0, help="backbone width (the paper's 0.25/0.5/1/2): scales the stem, "
        "RES2_OUT_CHANNELS and WIDTH_PER_GROUP")
    p.add_argument("--fpn-channels", type=int, default=256, help="MODEL.FPN.OUT_CHANNELS")
    p.add_argument("--norm", help="MODEL.RESNETS.NORM (cpu: FrozenBN, as the shipped COCO configs; cuda: BN)")
    p.add_argument("--freeze-at", type=int, help="MODEL.BACKBONE.FREEZE_AT (cpu: 2, as the shipped configs; cuda: 0)")
    p.add_argument("--num-classes", type=int, default=80, help="MODEL.ROI_HEADS.NUM_CLASSES")
    p.add_argument(
        "--device", help="cuda, cpu or auto (the GPU when usable); default: MODEL.DEVICE among the "
        "overrides, else auto")
    p.add_argument("--batch", type=int, help="training images per step (cuda 8, cpu 2); inference is at batch 1")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=[800, 1216], help="image size")
    p.add_argument("--iters", type=int, help="timed iterations per round and metric (cuda 20, cpu 1)")
    p.add_argument("--warmup", type=int, help="untimed iterations per metric before the rounds (cuda 5, cpu 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds over all models (cuda 3, cpu 5)")
    p.add_argument("--threads", type=int, nargs="+",
                   help="torch CPU thread counts to measure in turn; 0: all (torch's default) (cpu: 1 0)")
    p.add_argument("--skip", nargs="*", choices=MEASUREMENTS, help="measurements to leave out (cuda: compile export)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="auto: float16 AMP on CUDA, skipped on the CPU; on: also on the CPU, as bfloat16")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark (Detectron2's default is off)")
    p.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (CPU runs with one thread on a shared machine: "
        "time other processes take is then not counted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="folder to write benchmark.json into")
    p.add_argument("--markdown", metavar="JSON", help="only print the docs' tables of a benchmark.json, and exit")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="further Detectron2 config overrides, last on the line")
    return p


def build_cfg(args, variant, impl):
    """The shipped Faster R-CNN FPN config (``Base-RGSNet-FPN.yaml``) with the benchmark's model.

    Built from the yaml every FPN experiment uses, so the measured network is the one that
    is trained (``STRIDE_IN_1X1: False``, torchvision layout); only the architecture, the
    norm, freezing, class count and shortcut implementation are set here.
    """
    spec = RGSNetSpec.create(variant, args.depth, args.width_mult, norm=args.norm, shortcut_impl=impl)
    opts = [x for kv in spec.architecture_settings().items() for x in kv]
    opts += [
        "MODEL.RESNETS.NORM", args.norm, "MODEL.RGSNET.SHORTCUT_IMPL", impl, "MODEL.BACKBONE.FREEZE_AT", args.freeze_at,
        "MODEL.FPN.OUT_CHANNELS", args.fpn_channels, "MODEL.ROI_HEADS.NUM_CLASSES", args.num_classes, "MODEL.WEIGHTS",
        ""
    ]
    opts += [*args.opts, "MODEL.DEVICE", args.device]  # the device the runner uses, whatever the overrides say
    cfg = get_rgsnet_cfg(get_config_file("Base-RGSNet-FPN.yaml"), opts)
    cfg.freeze()
    return cfg


def _plan(args):
    """(row name, variant, impl) for every model to measure; the baseline comes first."""
    variants = [get_variant(v, key="--variants").name for v in args.variants]
    variants = [BASELINE] + [v for v in dict.fromkeys(variants) if v != BASELINE]
    impls = list(dict.fromkeys(args.shortcut_impl))
    plan = []
    for variant in variants:
        for impl in impls if variant != BASELINE else impls[:1]:
            name = variant if len(impls) == 1 or variant == BASELINE else f"{variant}/{impl}"
            plan.append((name, variant, impl))
    return plan


def _measurements(args, impl, threads=None):
    """What a row measures (at ``threads``): compiled and exported forms once per variant (they run what the
    first implementation runs: fused when compiled, the reference ops when exported); training at the last
    thread count only (on the CPU: every core; it is the figure, inference is the target)."""
    first = impl == args.shortcut_impl[0]
    return [
        m for m in MEASUREMENTS if m not in args.skip and (first or m not in ("compile", "export")) and
        (m != "training" or threads in (None, args.threads[-1]))
    ]


def _log(message):
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


def _measure(args, plan, models, threads):
    """Warm-up, then rounds over all models (rotated order); returns name -> metric -> list of samples."""
    torch.set_num_threads(threads or _ALL_THREADS)
    samples = {name: {} for name, _, _ in plan}
    steps = {
        name: {m: models[name].steps(m, threads) for m in _measurements(args, impl, threads)} for name, _, impl in plan
    }
    for rnd in range(-1, args.rounds):  # round -1: the warm-up
        shift = max(rnd, 0) % len(plan)
        for name, _, _ in plan[shift:] + plan[:shift]:
            started = time.perf_counter()
            for measurement, per_metric in steps[name].items():
                models[name].model.train(measurement == "training")
                if args.device == "cuda" and measurement == "training":
                    torch.cuda.reset_peak_memory_stats()
                for metric, step in per_metric.items():
                    times = models[name].timed(step, args.warmup if rnd < 0 else args.iters)
                    if rnd >= 0:
                        samples[name].setdefault(metric, []).extend(1e3 * t for t in times)
                if args.device == "cuda" and measurement == "training" and rnd >= 0:
                    samples[name].setdefault("peak_mb_fp32", []).append(torch.cuda.max_memory_allocated() / MB)
            what = "warm-up" if rnd < 0 else f"round {rnd + 1}/{args.rounds}"
            _log(f"{threads or _ALL_THREADS} thread(s), {what}: {name} in {time.perf_counter() - started:.0f} s")
    return samples


def _build(args, plan, batch, amp_dtype, clock):
    """Every row's model, compiled and exported where its measurements need it; the bytes autograd saves."""
    models, saved = {}, {}
    for name, variant, impl in plan:
        started = time.perf_counter()
        model = models[name] = Model(args, variant, impl, batch, amp_dtype, clock)
        todo = _measurements(args, impl)
        if "training" in todo:
            saved[name] = {f"saved_mb_{tag}": [model.saved_mb(amp)] for tag, amp in model.precisions()}
        if "compile" in todo:
            model.compile()
        if "export" in todo:
            model.export()
        _log(f"{name} built ({', '.join(todo)}) in {time.perf_counter() - started:.0f} s")
    return models, saved


def _summary(plan, samples, params):
    """Medians (worst round for peak memory), ratios to the baseline, spread of the timed samples."""
    for name in samples:
        samples[name]["params_m"] = [params[name]]
    results = {
        name: {k: (max(v) if k.startswith("peak") else statistics.median(v)) for k, v in s.items()}
        for name, s in samples.items()
    }
    spread = {name: {k: [min(v), max(v), len(v)] for k, v in s.items() if "_ms" in k} for name, s in samples.items()}
    base = results[BASELINE]
    ratios = {name: {k: r[k] / base[k] for k in r if k in base and base[k]} for name, r in results.items()}
    return {"results": results, "ratios": ratios, "spread_ms": spread}


def run(args):
    """Measure every planned model at every thread count; return the JSON-ready report."""
    args.device = resolve_device(requested_device(args.device, args.opts))
    if args.device not in DEVICE_DEFAULTS:
        raise ConfigError(f"the benchmark runs on cpu or cuda, not {args.device!r}: choose the GPU with "
                          "CUDA_VISIBLE_DEVICES")
    for key, value in DEVICE_DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.clock == "cpu" and (args.device == "cuda" or args.threads != [1]):
        raise ConfigError("--clock cpu measures one thread's host CPU time: use it with --device cpu --threads 1")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    amp_dtype, skipped = None, {m: "off by request" for m in args.skip}
    if args.device == "cuda" and args.amp != "off":
        amp_dtype = torch.float16
    elif args.device == "cpu" and args.amp == "on":
        amp_dtype = torch.bfloat16
    else:
        skipped["amp"] = ("off by request"
                          if args.amp == "off" else "CPU: AMP is a CUDA measurement (--amp on gives bfloat16 autocast)")
    if args.device != "cuda":
        skipped["peak_mb"] = "CPU: no allocator peak; see saved_mb (autograd saved tensors) instead"
        skipped["backbone_ms"] = "CPU: the training figure is the whole step (train_ms)"
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    plan = _plan(args)
    batch = synthetic_batch(args.batch, *args.input_size, args.num_classes, args.device, args.seed)
    load_before = os.getloadavg()
    with EventStorage():  # Detectron2's losses log into it, as under a trainer
        models, saved = _build(args, plan, batch, amp_dtype, clock)
        params = {name: sum(p.numel() for p in m.model.parameters()) / 1e6 for name, m in models.items()}
        runs = []
        for threads in args.threads:
            samples = _measure(args, plan, models, threads)
            for name, values in saved.items():
                samples[name].update(values)
            runs.append({"threads": threads or _ALL_THREADS, **_summary(plan, samples, params)})
    del models
    gc.collect()
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "environment": {
            "device": torch.cuda.get_device_name() if args.device == "cuda" else cpu_model(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        },
        "metrics": {k: METRICS[k] for k in METRICS if any(k in r["results"][BASELINE] for r in runs)},
        "skipped": skipped,
        "runs": runs,
    }


def format_table(report):
    """Per thread count, one row per model: value and ratio to the baseline for every metric."""
    lines = []
    for run_ in report["runs"]:
        metrics = [m for m in report["metrics"] if m in run_["results"][BASELINE]]
        rows = []
        for name, values in run_["results"].items():
            ratio = run_["ratios"][name]
            rows.append([name] + [f"{values[m]:.4g} ({ratio[m]:.3f}x)" if m in values else "" for m in metrics])
        lines += [f"{run_['threads']} thread(s):", tabulate(rows, headers=["model"] + metrics, tablefmt="pipe")]
        lines.append("  spread of the timed samples (min-max ms, n): " +
                     "; ".join(f"{name} {k} {lo:.4g}-{hi:.4g} (n={n})" for name, per in run_["spread_ms"].items()
                               for k, (lo, hi, n) in per.items() if name == BASELINE))
    lines += [f"  {m}: {d}" for m, d in report["metrics"].items()]
    lines += [f"  skipped {k}: {why}" for k, why in report["skipped"].items()]
    return "\n".join(lines)


# The columns of the docs' tables (docs/BENCHMARK.md, README), in this order.
DOC_COLUMNS = {
    "infer_ms_fp32": "detector",
    "backbone_infer_ms_fp32": "backbone + FPN",
    "compiled_infer_ms": "detector, compiled",
    "compiled_backbone_infer_ms": "backbone + FPN, compiled",
    "torchscript_ms": "TorchScript",
    "onnx_ms": "ONNX Runtime",
    "train_ms_fp32": "training step",
    "saved_mb_fp32": "saved activations",
}


def markdown_tables(report, ratios_only=False):
    """The tables docs/BENCHMARK.md (``ratios_only``: the README) shows for a report: per thread count, each
    model's median ms [min-max] and ratio to ``original`` (a test keeps the docs equal to the committed JSON)."""
    tables = []
    for run_ in report["runs"]:
        columns = [m for m in DOC_COLUMNS if m in run_["results"][BASELINE]]
        lines = [
            f"| {run_['threads']} thread(s) | " + " | ".join(DOC_COLUMNS[m] for m in columns) + " |",
            "|---|" + "---|" * len(columns)
        ]
        for name, values in run_["results"].items():
            cells = []
            for m in columns:
                ratio = f"{run_['ratios'][name][m]:.3f}x" if m in values else "-"
                lo, hi, _ = run_["spread_ms"][name].get(m, (None, None, None))
                value = f"{values[m]:.0f}" + (f" [{lo:.0f}-{hi:.0f}]" if lo is not None else "") if m in values else ""
                cells.append(ratio if ratios_only or not value else f"{value} {ratio}")
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def _main(argv):
    args = get_parser().parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            report = json.load(f)
        print(markdown_tables(report) + "\n\nREADME:\n\n" + markdown_tables(report, ratios_only=True))
        return 0
    try:
        report = run(args)
    finally:
        torch.set_num_threads(_ALL_THREADS)
    env = report["environment"]
    print(f"{env['device']} ({env['cpu_count']} CPUs) | torch {env['torch']} | load {env['load_average_1_5_15_min']} | "
          f"batch {args.batch} (inference 1) at {args.input_size[0]}x{args.input_size[1]}, R{args.depth}-FPN "
          f"x{args.width_mult}, {args.norm}, {args.rounds} round(s) x {args.iters} iters after {args.warmup} warm-up, "
          f"{args.clock} clock")
    print(format_table(report))
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        path = os.path.join(args.output, "benchmark.json")
        atomic_write(path, lambda f: json.dump(report, f, indent=2), mode="w")
        print(f"wrote {path}")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "benchmark")


if __name__ == "__main__":
    sys.exit(main())
