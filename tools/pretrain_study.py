"""The paper's claim (Tables 2, 6, 7) on real data, measured: pretraining on Fashion-MNIST, then detection.

    python tools/pretrain_study.py --output output/study                      # docs/RESULTS.md's study
    python tools/pretrain_study.py --output output/study_init --rg-init paper zero --variants Res-RGS \\
        --det-variants Res-RGS --starts scratch                               # the initialisation study
    python tools/pretrain_study.py --output output/study_warm --variants original Res-RGS \\
        --det-variants b-RGS Res-RGS --rg-init paper zero --starts pretrained warm warm-finetune  # warm starts
    python tools/pretrain_study.py --output output/study --summary-only

1. Classification: each of ``--variants`` (default original, b-RGS, d-RGS, Res-RGS) at depth
   26, 0.25x width, ImageNet stem, trained with ``train_classifier`` on Fashion-MNIST at
   32x32 with the ``cifar`` recipe (the paper's Sec. 4.2; momentum ours) shortened to ``--epochs``
   (default 16 of 164), for
   each of ``--seeds`` and ``--rg-init``; first-epoch train loss and test error of the last epoch.
2. Detection on the built-in digits: each of ``--det-variants`` (default original, b-RGS,
   Res-RGS) trained with ``configs/demo/digits_res_rgs.yaml`` from each of ``--starts``: from
   ``scratch``; from its own ``pretrained`` classifier, converted; a ``warm`` start from the
   ``original`` classifier of the same seed (``convert --warm-start-from-resnet``, the road a
   user with torchvision's ResNet-50 takes); ``warm-finetune``: that warm start first trained as a
   classifier for ``--finetune-epochs`` (``train_classifier --warm-start``), then converted.
   COCO AP of the final model, and the losses of each of the first ``--first-iterations``
   iterations (``tools/first_iterations.py``: does the start diverge?).

A developer tool (not installed). Runs go ``--lanes`` at a time, one CPU thread each, each
in its own folder with its log. The study resumes: finished runs are kept, interrupted
classifier runs continue (``--resume``). ``summary.md`` and ``results.json`` give mean ±
standard deviation over the finished seeds and mark tables that are still partial.
Variants that an initialisation does not apply to (``rg_init zero`` needs Res-RGS) are
skipped. ``--smoke`` runs every stage on tiny data and schedules (its numbers mean
nothing). Exit status: 0 all runs finished, 1 one failed, 2 usage error.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rgs_detectron.classification.classifier import RGSNetClassifier
from rgs_detectron.data.builtin import digits_root
from rgs_detectron.data.digits import generate_digits_dataset
from rgs_detectron.errors import ConfigError, UserError, first_line
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling.spec import RG_INITS, RGSNetSpec
from rgs_detectron.utils.commandline import run_tool
from rgs_detectron.utils.fileio import atomic_write
from rgs_detectron.utils.plots import read_metrics
from rgs_detectron.utils.torch_files import load_weights_only

PY = sys.executable
TOOLS = os.path.dirname(os.path.abspath(__file__))
FM_PUBLISHED = "ResNet18: 94.9% accuracy (Fashion-MNIST's benchmark table; another recipe and model size)"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
STARTS = ("scratch", "pretrained", "warm", "warm-finetune")
WARM_SOURCE = "original"  # the plain ResNet every warm start copies (torchvision's ResNet-50 in a user's hands)
# --smoke: every stage on tiny data and schedules.
SMOKE_CLASSIFIER = ["--limit-train", "1024", "--limit-val", "512"]
SMOKE_DETECTOR = [
    "SOLVER.MAX_ITER", "30", "SOLVER.STEPS", "(20,)", "SOLVER.CHECKPOINT_PERIOD", "30", "TEST.EVAL_PERIOD", "30"
]
SHOWN_ITERATIONS = (0, 1, 2, 4, 9, 19)  # the first-iteration losses the summary shows (all are in results.json)
FIRST_STEPS = (0, 50, 100, 200, 400)  # the steps of a warm-started classifier's first epoch the summary shows


def _applies(variant, init):
    try:
        RGSNetSpec.create(variant, 26, 0.25, rg_init=init)
    except ConfigError:
        return False
    return True


def _name(variant, init):
    return variant if init == "paper" else f"{variant} (rg_init {init})"


def _folder(args, kind, variant, init, seed, start=""):
    tag = variant if init == "paper" else f"{variant}_rg-{init}"
    return os.path.join(args.output, kind, f"{tag}_seed{seed}", start)


def _run(name, commands, folder, after=None):
    """Run ``commands`` in order, logging to ``folder/job.log``, once the job ``after`` (a future) succeeded;
    True when all succeeded."""
    if after is not None and not after.result():
        print(f"[study] FAILED {name}: the run it starts from failed", flush=True)
        return False
    os.makedirs(folder, exist_ok=True)
    print(f"[study] start {name}", flush=True)
    with open(os.path.join(folder, "job.log"), "a") as log:
        for cmd in commands:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV)
            if rc:
                print(f"[study] FAILED {name} (exit {rc}); see {folder}/job.log", flush=True)
                return False
    print(f"[study] done {name}", flush=True)
    return True


def _readable(read, path):
    """``read(path)``; for a file that cannot be read (truncated, foreign), one line naming it and None:
    the run counts as not finished, and the summary goes on."""
    try:
        return read(path)
    except (OSError, ValueError, LookupError, TypeError, UserError) as e:
        print(f"[study] cannot read {path} ({first_line(e)}): counted as not finished", flush=True)
        return None


def _final_ap(folder):
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(os.path.join(folder, "model_final.pth")) or not os.path.isfile(path):
        return None

    def last_ap(p):
        rows = [r for r in read_metrics(p) if "bbox/AP" in r]
        return float(rows[-1]["bbox/AP"]) if rows else None

    return _readable(last_ap, path)


def _detector_opts(args, variant, init, seed, weights):
    opts = [
        "MODEL.RGSNET.VARIANT", variant, "MODEL.RGSNET.RG_INIT", init, "SEED",
        str(seed), "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"
    ] + (SMOKE_DETECTOR if args.smoke else [])
    return opts + (["MODEL.WEIGHTS", weights] if weights else [])


def _detection(args, variant, init, seed, folder, weights=None):
    """The commands that train a detector in ``folder``: its first iterations (if asked), then ``train_net``."""
    config, opts = get_config_file("demo/digits_res_rgs.yaml"), _detector_opts(args, variant, init, seed, weights)
    commands = []
    if args.first_iterations:
        commands.append([
            PY,
            os.path.join(TOOLS, "first_iterations.py"), "--iterations",
            str(args.first_iterations), "--output",
            os.path.join(folder, "first_iterations.json"), "--config-file", config, *opts
        ])
    return commands + [[
        PY, "-m", "rgs_detectron.cli.train_net", "--config-file", config, "--resume", *opts, "OUTPUT_DIR", folder
    ]]


def _convert(source, weights, *target):
    return [PY, "-m", "rgs_detectron.cli.convert", source, weights, "--overwrite", *target]


def _classifier(args, variant, init, seed, out, epochs, warm_start=None):
    return [
        PY, "-m", "rgs_detectron.cli.train_classifier", "--dataset", "fashion_mnist", "--data-root", args.data_root,
        "--recipe", "cifar", "--epochs",
        str(epochs), "--variant", variant, "--rg-init", init, "--depth", "26", "--width-mult", "0.25", "--seed",
        str(seed), "--workers", "0", "--no-progress", "--device", "cpu", "--output", out, "--resume"
    ] + (SMOKE_CLASSIFIER if args.smoke else []) + (["--warm-start", warm_start] if warm_start else [])


def _finished(folder):
    return os.path.isfile(os.path.join(folder, "model_final.pth"))


def jobs(args):
    """(name, commands, folder) of every run still to do, and those of the warm starts with the folder of the
    ``original`` classifier each copies; a classifier and its pretrained detector are one job."""
    todo, warm = [], []
    for init in args.rg_init:
        for variant in [v for v in args.variants if _applies(v, init)]:
            for seed in args.seeds:
                out = _folder(args, "classification", variant, init, seed)
                commands = [] if _finished(out) else [_classifier(args, variant, init, seed, out, args.epochs)]
                pretrained = _folder(args, "detection", variant, init, seed, "pretrained")
                if "pretrained" in args.starts and variant in args.det_variants and _final_ap(pretrained) is None:
                    weights = os.path.join(pretrained, "imagenet_weights.pth")
                    commands.append(_convert(os.path.join(out, "model_final.pth"), weights))
                    commands += _detection(args, variant, init, seed, pretrained, weights)
                if commands:
                    todo.append((f"{_name(variant, init)} seed {seed}: classifier and its detector", commands, out))
        for variant in [v for v in args.det_variants if _applies(v, init)]:
            for seed in args.seeds:
                scratch = _folder(args, "detection", variant, init, seed, "scratch")
                if "scratch" in args.starts and _final_ap(scratch) is None:
                    todo.append((f"{_name(variant, init)} seed {seed}: detector from scratch",
                                 _detection(args, variant, init, seed, scratch), scratch))
                if variant == WARM_SOURCE:
                    continue
                source_run = _folder(args, "classification", WARM_SOURCE, "paper", seed)
                source = os.path.join(source_run, "model_final.pth")
                folder = _folder(args, "detection", variant, init, seed, "warm")
                if "warm" in args.starts and _final_ap(folder) is None:
                    weights = os.path.join(folder, "warm_weights.pth")
                    target = ["--variant", variant, "--rg-init", init, "--depth", "26", "--width-mult", "0.25"]
                    warm.append((f"{_name(variant, init)} seed {seed}: detector warm-started from {WARM_SOURCE}",
                                 [_convert(source, weights, *target, "--warm-start-from-resnet")] +
                                 _detection(args, variant, init, seed, folder, weights), folder, source_run))
                folder = _folder(args, "detection", variant, init, seed, "warm-finetune")
                if "warm-finetune" in args.starts and _final_ap(folder) is None:
                    tuned, weights = _folder(args, "finetune", variant, init, seed), os.path.join(folder, "weights.pth")
                    commands = [] if _finished(tuned) else [
                        _classifier(args, variant, init, seed, tuned, args.finetune_epochs, warm_start=source)
                    ]
                    warm.append(
                        (f"{_name(variant, init)} seed {seed}: warm start fine-tuned as a classifier, "
                         "and its detector", commands + [_convert(os.path.join(tuned, "model_final.pth"), weights)] +
                         _detection(args, variant, init, seed, folder, weights), folder, source_run))
    return todo, warm


def _mean_std(values):
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def _classifier_record(folder):
    """(first-epoch train loss, test error of the last epoch) of a finished classifier run, else None."""
    path = os.path.join(folder, "model_final.pth")
    if not os.path.isfile(path):
        return None
    top1 = _readable(lambda p: float(load_weights_only(p)["metrics"]["val_top1"]), path)
    first_loss = _readable(lambda p: float(json.loads(Path(p).read_text())[0]["train_loss"]),
                           os.path.join(folder, "metrics.json"))
    return None if top1 is None or first_loss is None else (first_loss, 100.0 - top1)


def _first_iterations(folder):
    """The first iterations' losses of the detector in ``folder`` (``tools/first_iterations.py``), else None."""
    path = os.path.join(folder, "first_iterations.json")
    return _readable(lambda p: json.loads(Path(p).read_text()), path) if os.path.isfile(path) else None


def _classifier_table(args, kind, variants, title, results):
    lines = [
        title, "",
        "| variant | parameters | seeds done | first-epoch train loss (mean ± std) | test error % (mean ± std) "
        "| top-1 % per seed |", "|---|---|---|---|---|---|"
    ]
    partial = False
    for init in args.rg_init:
        for variant in [v for v in variants if _applies(v, init)]:
            records = [r for r in (_classifier_record(_folder(args, kind, variant, init, s)) for s in args.seeds) if r]
            partial |= len(records) < len(args.seeds)
            losses, errors = [r[0] for r in records], [r[1] for r in records]
            params = sum(p.numel() for p in RGSNetClassifier(RGSNetSpec.create(variant, 26, 0.25), 10).parameters())
            results[_name(variant,
                          init)] = {"first_epoch_train_loss": losses, "test_error": errors, "parameters": params}
            lines.append(f"| {_name(variant, init)} | {params:,} | {len(records)}/{len(args.seeds)} | "
                         f"{_mean_std(losses)} | {_mean_std(errors)} | "
                         f"{', '.join(f'{100 - e:.2f}' for e in errors) or '–'} |")
    return lines, partial


def _first_iterations_table(args, results):
    """Per detector start, the total loss of the first iterations (mean over seeds) and any divergence."""
    shown = [i for i in SHOWN_ITERATIONS if i < args.first_iterations]
    lines = [
        "", f"## Detection: total loss of the first {args.first_iterations} iterations (mean over seeds)", "",
        "| variant | start | seeds | " + " | ".join(f"iteration {i}" for i in shown) + " | largest | diverged |",
        "|---|---|---|" + "---|" * (len(shown) + 2)
    ]
    for name, row in results.items():
        for start, runs in row.items():
            if not runs:
                continue
            losses = [[it["total_loss"] for it in run["iterations"]] for run in runs]
            mean = [statistics.mean(col) for col in zip(*losses)]
            diverged = [
                f"seed {run['seed']} at iteration {run['diverged_at']}" for run in runs
                if run["diverged_at"] is not None
            ]
            lines.append(f"| {name} | {start} | {len(runs)} | " +
                         " | ".join(f"{mean[i]:.3f}" if i < len(mean) else "–" for i in shown) +
                         f" | {max(map(max, filter(None, losses)), default=float('nan')):.3f} | "
                         f"{', '.join(diverged) or 'no'} |")
    return lines


def _first_steps(folder, steps=FIRST_STEPS):
    """The training loss a classifier run logged (TensorBoard, every 50 steps) at ``steps``, else None."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = os.path.join(folder, "tensorboard")
    if not os.path.isdir(events) or not _finished(folder):
        return None
    logged = EventAccumulator(events, size_guidance={"scalars": 0})
    logged.Reload()
    losses = {e.step: e.value for e in logged.Scalars("train/loss")}
    return [losses.get(step) for step in steps]


def _first_steps_table(args, results):
    """Per warm-started classifier, the training loss of its first steps (mean over seeds)."""
    lines = [
        "", f"## Classification after a warm start from {WARM_SOURCE}: training loss of the first steps (mean over "
        "seeds; batch 128)", "", "| variant | seeds | " + " | ".join(f"step {s}" for s in FIRST_STEPS) + " |",
        "|---|---|" + "---|" * len(FIRST_STEPS)
    ]
    for init in args.rg_init:
        for variant in [v for v in args.det_variants if v != WARM_SOURCE and _applies(v, init)]:
            runs = [r for r in (_first_steps(_folder(args, "finetune", variant, init, s)) for s in args.seeds) if r]
            results[_name(variant, init)] = runs
            means = [statistics.mean(col) if None not in col else None for col in zip(*runs)] if runs else []
            lines.append(f"| {_name(variant, init)} | {len(runs)} | " +
                         " | ".join("–" if m is None else f"{m:.3f}" for m in means or [None] * len(FIRST_STEPS)) +
                         " |")
    return lines


def summarize(args):
    """results.json and summary.md from whatever runs have finished."""
    results = {"classification": {}, "detection": {}, "settings": vars(args)}
    lines, partial = _classifier_table(args, "classification", args.variants,
                                       f"## Classification: Fashion-MNIST, depth 26, 0.25x, {args.epochs} epochs",
                                       results["classification"])
    lines += ["", f"Published on Fashion-MNIST (not comparable: {FM_PUBLISHED})."]
    if "warm-finetune" in args.starts:
        results["finetune"] = {}
        table, more = _classifier_table(
            args, "finetune", [v for v in args.det_variants if v != WARM_SOURCE],
            f"## Classification after a warm start from {WARM_SOURCE}: {args.finetune_epochs} epochs",
            results["finetune"])
        lines += [""] + table
        partial |= more
        results["finetune_first_steps"] = {}
        lines += _first_steps_table(args, results["finetune_first_steps"])
    lines += [
        "", "## Detection: digits COCO AP, 0.25x depth 26 FPN, 600 iterations", "",
        "| variant | " + " | ".join(f"{start} (mean ± std)" for start in args.starts) + " | seeds done |",
        "|---|" + "---|" * (len(args.starts) + 1)
    ]
    results["first_iterations"] = {}
    for init in args.rg_init:
        for variant in [v for v in args.det_variants if _applies(v, init)]:
            row, first = {}, {}
            for start in args.starts:
                if start.startswith("warm") and variant == WARM_SOURCE:
                    continue
                folders = [(s, _folder(args, "detection", variant, init, s, start)) for s in args.seeds]
                row[start] = [a for a in (_final_ap(f) for _, f in folders) if a is not None]
                partial |= len(row[start]) < len(args.seeds)
                first[start] = [dict(_first_iterations(f), seed=s) for s, f in folders if _first_iterations(f)]
            results["detection"][_name(variant, init)] = row
            results["first_iterations"][_name(variant, init)] = first
            lines.append(f"| {_name(variant, init)} | " +
                         " | ".join(_mean_std(row[s]) if s in row else "–" for s in args.starts) +
                         f" | {sum(map(len, row.values()))}/{len(row) * len(args.seeds)} |")
    if args.first_iterations:
        lines += _first_iterations_table(args, results["first_iterations"])
    if partial:
        lines = ["**PARTIAL: not every run has finished; counts are in the tables.**", ""] + lines
    if args.smoke:
        lines = ["**SMOKE RUN: tiny data and schedules; the numbers mean nothing.**", ""] + lines
    results["partial"] = partial
    atomic_write(os.path.join(args.output, "results.json"), lambda f: json.dump(results, f, indent=1), mode="w")
    atomic_write(os.path.join(args.output, "summary.md"), lambda f: f.write("\n".join(lines) + "\n"), mode="w")
    print("\n".join(lines))
    return results


def _lanes(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of runs at a time")
    return value


def _run_all(args):
    """Every job still to do, ``--lanes`` at a time; a warm start waits for the classifier it copies."""
    todo, warm = jobs(args)
    with ThreadPoolExecutor(args.lanes) as pool:
        futures = [pool.submit(_run, *job) for job in todo]  # first: the warm starts wait on some of them
        by_folder = {job[2]: future for job, future in zip(todo, futures)}
        futures += [pool.submit(_run, *job, by_folder.get(source)) for *job, source in warm]
        return all(future.result() for future in futures)


def _main(argv):
    p = argparse.ArgumentParser(prog="pretrain_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="output/study")
    p.add_argument("--data-root", default=os.getenv("DETECTRON2_DATASETS", "datasets"),
                   help="where Fashion-MNIST is (or is unpacked to from Debian's package)")
    p.add_argument("--variants", nargs="+", default=["original", "b-RGS", "d-RGS", "Res-RGS"])
    p.add_argument("--det-variants", nargs="*", default=["original", "b-RGS", "Res-RGS"])
    p.add_argument("--rg-init", nargs="+", choices=RG_INITS, default=["paper"],
                   help="initialisations of the RG shortcut to compare (zero applies to Res-RGS only)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--starts", nargs="+", choices=STARTS, default=["scratch", "pretrained"],
                   help="how each detector starts (see above)")
    p.add_argument("--finetune-epochs", type=int, default=4, help="classifier epochs of a warm start (warm-finetune)")
    p.add_argument("--first-iterations", type=int, default=20,
                   help="record every loss of this many first iterations of each detector (0: none)")
    p.add_argument("--smoke", action="store_true", help="every stage on tiny data and schedules (a quick check)")
    p.add_argument("--lanes", type=_lanes, default=2, help="runs at a time (one CPU thread each)")
    p.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from finished runs")
    args = p.parse_args(argv)
    if any(s.startswith("warm") for s in args.starts) and (WARM_SOURCE not in args.variants or
                                                           "paper" not in args.rg_init):
        p.error(f"--starts {' '.join(args.starts)}: warm starts copy the {WARM_SOURCE} classifiers; add "
                f"{WARM_SOURCE} to --variants and paper to --rg-init")
    os.makedirs(args.output, exist_ok=True)
    ok = True
    if not args.summary_only:
        if args.det_variants:
            generate_digits_dataset(digits_root())
        ok = _run_all(args)
    summarize(args)
    return 0 if ok else 1


def main(argv=None):
    return run_tool(_main, argv, "pretrain_study")


if __name__ == "__main__":
    sys.exit(main())
