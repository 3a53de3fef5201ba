#!/usr/bin/env python
"""Side-by-side cost of the RG shortcut: Faster R-CNN with an RGSNet-FPN backbone (a developer tool, as
Detectron2's own tools/benchmark.py: not installed with the package).

Every run measures the plain ResNet (``original``) next to the RGS variants, in the same
process and on the same synthetic data, and reports each variant's ratio to it: absolute
numbers move with the machine and its load, ratios measured together do much less.

Per variant it measures (medians of the timed iterations, after warm-up):

* ``train_ms_fp32`` / ``train_ms_amp``: one training step (forward, backward, SGD step);
  AMP is ``torch.autocast`` + ``GradScaler`` as Detectron2's ``AMPTrainer`` does it
  (float16 on CUDA; on the CPU only with ``--amp on``, as bfloat16 autocast, no scaler);
* ``backbone_ms_fp32`` / ``backbone_ms_amp``: forward and backward of backbone + FPN alone on
  the same images: the shortcut's own cost, free of the RPN/ROI heads' data-dependent work
  (proposals differ between variants, and with them e.g. RoIAlign's backward time);
* ``peak_mb_fp32`` / ``peak_mb_amp``: ``torch.cuda.max_memory_allocated`` over the timed
  training steps (CUDA only);
* ``saved_mb_fp32`` / ``saved_mb_amp``: bytes autograd keeps for backward in one training
  forward (distinct storages, parameters excluded), counted with ``saved_tensors_hooks``:
  the activation-memory figure that also means something on the CPU;
* ``infer_ms_fp32`` / ``infer_ms_amp``: ``model.eval()`` latency at batch 1, no grad;
  ``backbone_infer_ms_*`` the same for backbone + FPN alone (no proposal-dependent work).

Examples::

    # the GPU measurement (batch 8 at 800x1216, R50; "auto" is the lean shortcut while
    # training on CUDA, "reference" the plain ops)
    python tools/benchmark.py --device cuda --shortcut-impl auto reference --rounds 2 \\
        --output output/benchmark_gpu
    # a CPU smoke run
    python tools/benchmark.py --device cpu --batch 1 --input-size 128 160 \\
        --iters 3 --warmup 1 --depth 26 --width-mult 0.25 --output /tmp/bench

The model is the shipped ``Base-RGSNet-FPN.yaml`` with the requested architecture. It is
rebuilt with the same seed for every round, and the variant order rotates between rounds
so that slow drifts of the machine do not all fall on one variant. ``--output`` is a
folder; the report goes to ``benchmark.json`` in it.
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import torch
from tabulate import tabulate

from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from rgs_detectron.config import get_rgsnet_cfg, resolve_device
from rgs_detectron.errors import ConfigError
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling.spec import SHORTCUT_IMPLS, RGSNetSpec
from rgs_detectron.modeling.variants import get_variant
from rgs_detectron.utils.fileio import atomic_write
from rgs_detectron.engine.defaults import requested_device
from rgs_detectron.utils.commandline import run_tool


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


class Runner:
    """Times one model's training steps and inference, synchronizing CUDA around each."""

    def __init__(self, model, device, amp_dtype, clock=time.perf_counter):
        self.model = model
        self.clock = clock
        self.device = device
        self.amp_dtype = amp_dtype
        # lr 0: a real update's work, same weights every step (see the module docstring).
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
        use_scaler = amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device, enabled=use_scaler) if amp_dtype is not None else None

    def _autocast(self, amp):
        return torch.autocast(self.device, dtype=self.amp_dtype) if amp else nullcontext()

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def train_step(self, batch, amp):
        with self._autocast(amp):
            losses = sum(self.model(batch).values())
        self.optimizer.zero_grad()
        if amp:
            self.scaler.scale(losses).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses.backward()
            self.optimizer.step()

    def saved_bytes(self, batch, amp):
        """Bytes autograd keeps for backward in one training forward."""
        with self._autocast(amp):
            return saved_activation_bytes(self.model, lambda: self.model(batch))[0]

    def backbone_step(self, images, amp):
        """Backbone + FPN forward and backward alone: the RG shortcut's cost without the
        RPN/ROI heads, whose work depends on the (variant-dependent) proposals."""
        with self._autocast(amp):
            features = self.model.backbone(images)
            loss = sum(f.float().mean() for f in features.values())
        self.optimizer.zero_grad()
        (self.scaler.scale(loss) if amp else loss).backward()

    def _time(self, step, warmup, iters):
        """Per-iteration times of ``step()`` after ``warmup`` calls, and the CUDA peak over them."""
        for _ in range(warmup):
            step()
        self._sync()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(iters):
            self._sync()
            start = self.clock()
            step()
            self._sync()
            times.append(self.clock() - start)
        peak = torch.cuda.max_memory_allocated() if self.device == "cuda" else None
        return times, peak

    def time_train(self, batch, amp, warmup, iters):
        self.model.train()
        return self._time(lambda: self.train_step(batch, amp), warmup, iters)

    def time_backbone(self, batch, amp, warmup, iters):
        self.model.train()
        images = self.model.preprocess_image(batch).tensor.detach()
        return self._time(lambda: self.backbone_step(images, amp), warmup, iters)[0]

    @torch.no_grad()
    def time_inference(self, image, amp, warmup, iters):
        """Batch-1 latency of the whole detector and of backbone + FPN alone."""
        self.model.eval()
        tensor = self.model.preprocess_image([image]).tensor

        def detector():
            with self._autocast(amp):
                self.model([image])

        def backbone():
            with self._autocast(amp):
                self.model.backbone(tensor)

        times = self._time(detector, warmup, iters)[0], self._time(backbone, warmup, iters)[0]
        self.model.train()
        return times


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
DEFAULT_VARIANTS = ("original", "b-RGS", "d-RGS", "Res-RGS")
# Defaults per device: the paper-scale measurement on a GPU, something that ends on a CPU.
DEVICE_DEFAULTS = {
    "cuda": dict(batch=8, input_size=[800, 1216], iters=20, warmup=5, rounds=3),
    "cpu": dict(batch=2, input_size=[256, 320], iters=5, warmup=2, rounds=1),
}
METRICS = {
    "train_ms_fp32": "training step, fp32 (median ms)",
    "train_ms_amp": "training step, AMP (median ms)",
    "backbone_ms_fp32": "backbone + FPN forward and backward only, fp32 (median ms; no heads)",
    "backbone_ms_amp": "backbone + FPN forward and backward only, AMP (median ms; no heads)",
    "peak_mb_fp32": "peak CUDA memory allocated over fp32 training steps (MiB)",
    "peak_mb_amp": "peak CUDA memory allocated over AMP training steps (MiB)",
    "saved_mb_fp32": "autograd saved tensors in one fp32 training forward (MiB, parameters excluded)",
    "saved_mb_amp": "autograd saved tensors in one AMP training forward (MiB, parameters excluded, "
    "autocast's weight copies included)",
    "infer_ms_fp32": "inference at batch 1, fp32 (median ms)",
    "infer_ms_amp": "inference at batch 1, AMP (median ms)",
    "backbone_infer_ms_fp32": "backbone + FPN alone at batch 1, inference, fp32 (median ms)",
    "backbone_infer_ms_amp": "backbone + FPN alone at batch 1, inference, AMP (median ms)",
    "params_m": "parameters (millions)",
}
MB = 2.0**20


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                   help="variants to compare; 'original' is always added as the baseline")
    p.add_argument("--shortcut-impl", nargs="+", default=["auto"], choices=SHORTCUT_IMPLS,
                   help="MODEL.RGSNET.SHORTCUT_IMPL; several values benchmark each RGS variant once per value")
    p.add_argument("--depth", type=int, default=50, help="MODEL.RESNETS.DEPTH (26, 38, 50, 101, ...)")
    p.add_argument(
        "--width-mult", type=float, default=1.0, help="backbone width (the paper's 0.25/0.5/1/2): scales the stem, "
        "RES2_OUT_CHANNELS and WIDTH_PER_GROUP")
    p.add_argument("--fpn-channels", type=int, default=256, help="MODEL.FPN.OUT_CHANNELS")
    p.add_argument("--norm", default="BN", help="MODEL.RESNETS.NORM (trainable BN by default)")
    p.add_argument("--freeze-at", type=int, default=0, help="MODEL.BACKBONE.FREEZE_AT")
    p.add_argument("--num-classes", type=int, default=80, help="MODEL.ROI_HEADS.NUM_CLASSES")
    p.add_argument(
        "--device", help="cuda, cpu or auto (the GPU when usable); default: MODEL.DEVICE among the "
        "overrides, else auto")
    p.add_argument("--batch", type=int, help="training images per step (cuda 8, cpu 2)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="image size (cuda 800 1216, cpu 256 320)")
    p.add_argument("--iters", type=int, help="timed iterations per round and phase (cuda 20, cpu 5)")
    p.add_argument("--warmup", type=int, help="untimed iterations before them (cuda 5, cpu 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds over all variants (cuda 3, cpu 1)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="auto: float16 AMP on CUDA, skipped on the CPU; on: also on the CPU, as bfloat16")
    p.add_argument("--no-inference", action="store_true", help="skip the batch-1 inference latency")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark (Detectron2's default is off)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: leave torch's default)")
    p.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (CPU runs on a shared machine, "
        "with --threads 1: time other processes take is then not counted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="folder to write benchmark.json into")
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


def _measure(args, plan, batch, amp_dtype):
    """Rounds over all models (rotated order); returns name -> metric -> list of samples."""
    samples = {name: {} for name, _, _ in plan}
    precisions = [("fp32", False)] + ([("amp", True)] if amp_dtype is not None else [])
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for rnd in range(args.rounds):
        shift = rnd % len(plan)
        for name, variant, impl in plan[shift:] + plan[:shift]:
            torch.manual_seed(args.seed)
            model = build_model(build_cfg(args, variant, impl))
            runner = Runner(model, args.device, amp_dtype, clock)
            started = time.perf_counter()
            s = samples[name]
            s["params_m"] = [sum(p.numel() for p in model.parameters()) / 1e6]
            for tag, amp in precisions:
                if rnd == 0:  # deterministic: once is enough
                    s[f"saved_mb_{tag}"] = [runner.saved_bytes(batch, amp) / MB]
                times, peak = runner.time_train(batch, amp, args.warmup, args.iters)
                s.setdefault(f"train_ms_{tag}", []).extend(1e3 * t for t in times)
                if peak is not None:
                    s.setdefault(f"peak_mb_{tag}", []).append(peak / MB)
                times = runner.time_backbone(batch, amp, args.warmup, args.iters)
                s.setdefault(f"backbone_ms_{tag}", []).extend(1e3 * t for t in times)
            if not args.no_inference:
                for tag, amp in precisions:
                    times, backbone_times = runner.time_inference(batch[0], amp, args.warmup, args.iters)
                    s.setdefault(f"infer_ms_{tag}", []).extend(1e3 * t for t in times)
                    s.setdefault(f"backbone_infer_ms_{tag}", []).extend(1e3 * t for t in backbone_times)
            print(
                f"[benchmark] round {rnd + 1}/{args.rounds}: {name} measured in "
                f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            del runner, model
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
    return samples


def run(args):
    """Measure every planned model; return the JSON-ready report."""
    args.device = resolve_device(requested_device(args.device, args.opts))
    if args.device not in DEVICE_DEFAULTS:
        raise ConfigError(f"the benchmark runs on cpu or cuda, not {args.device!r}: choose the GPU with "
                          "CUDA_VISIBLE_DEVICES")
    for key, value in DEVICE_DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and args.clock == "cpu":
        raise ConfigError("--clock cpu measures host CPU time, not GPU work: use --clock wall with --device cuda")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    amp_dtype, skipped = None, {}
    if args.device == "cuda" and args.amp != "off":
        amp_dtype = torch.float16
    elif args.device == "cpu" and args.amp == "on":
        amp_dtype = torch.bfloat16
    else:
        skipped["amp"] = ("off by request"
                          if args.amp == "off" else "CPU: AMP is a CUDA measurement (--amp on gives bfloat16 autocast)")
    if args.device != "cuda":
        skipped["peak_mb"] = "CPU: no allocator peak; see saved_mb (autograd saved tensors) instead"
    if args.no_inference:
        skipped["inference"] = "off by request"

    plan = _plan(args)
    batch = synthetic_batch(args.batch, *args.input_size, args.num_classes, args.device, args.seed)
    with EventStorage():  # Detectron2's losses log into it, as under a trainer
        samples = _measure(args, plan, batch, amp_dtype)

    # Peak memory: the worst round; everything else: the median over all timed iterations.
    results = {
        name: {k: (max(v) if k.startswith("peak") else statistics.median(v))
               for k, v in s.items()}
        for name, s in samples.items()
    }
    # How far the timed samples spread: a ratio closer to 1 than this spread is noise.
    spread = {name: {k: [min(v), max(v), len(v)] for k, v in s.items() if "_ms_" in k} for name, s in samples.items()}
    base = results[BASELINE]
    ratios = {name: {k: r[k] / base[k] for k in r if k in base and base[k]} for name, r in results.items()}
    return {
        "settings": {k: v
                     for k, v in vars(args).items() if k != "output"},
        "environment": {
            "device": torch.cuda.get_device_name() if args.device == "cuda" else cpu_model(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpu_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "metrics": {k: METRICS[k]
                    for k in METRICS if k in base},
        "skipped": skipped,
        "results": results,
        "ratios": ratios,
        "spread_ms": spread,
    }


def format_table(report):
    """One row per model: value and ratio to the baseline for every metric."""
    metrics = list(report["metrics"])
    rows = []
    for name, values in report["results"].items():
        ratio = report["ratios"][name]
        cells = [f"{values[m]:.4g} ({ratio[m]:.3f}x)" if m in ratio else f"{values[m]:.4g}" for m in metrics]
        rows.append([name] + cells)
    lines = [tabulate(rows, headers=["model"] + metrics, tablefmt="pipe")]
    lines += [f"  {m}: {d}" for m, d in report["metrics"].items()]
    lines.append("  spread of the timed samples (min-max ms, n): " +
                 "; ".join(f"{name} {k} {lo:.4g}-{hi:.4g} (n={n})" for name, per in report["spread_ms"].items()
                           for k, (lo, hi, n) in per.items() if name == BASELINE))
    lines += [f"  skipped {k}: {why}" for k, why in report["skipped"].items()]
    return "\n".join(lines)


def _main(argv):
    args = get_parser().parse_args(argv)
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run(args)
    finally:
        torch.set_num_threads(threads_before)
    env = report["environment"]
    print(f"{env['device']} | torch {env['torch']} | {env['cpu_threads']} CPU threads | "
          f"batch {args.batch} at {args.input_size[0]}x{args.input_size[1]}, R{args.depth}-FPN x{args.width_mult}, "
          f"{args.rounds} round(s) x {args.iters} iters after {args.warmup} warm-up, {args.clock} clock")
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
