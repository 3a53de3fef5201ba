"""The paper's claim on real data, measured: pretraining on Fashion-MNIST, then detection.

    python tools/pretrain_study.py --output output/study                      # the README study
    python tools/pretrain_study.py --output output/study_init --rg-init paper zero --variants Res-RGS \\
        --det-variants Res-RGS --no-pretrained                                # the initialisation study
    python tools/pretrain_study.py --output output/study --summary-only

1. Classification: each of ``--variants`` (default original, b-RGS, d-RGS, Res-RGS) at depth
   26, 0.25x width, ImageNet stem, trained with ``train_classifier`` on Fashion-MNIST at
   32x32 with the paper's CIFAR recipe shortened to ``--epochs`` (default 16 of 164), for
   each of ``--seeds`` and ``--rg-init``; first-epoch train loss and test error of the last epoch.
2. Detection on the built-in digits: each of ``--det-variants`` (default original, b-RGS,
   Res-RGS) trained with ``configs/demo/digits_res_rgs.yaml`` from scratch and (unless
   ``--no-pretrained``) from its own pretrained classifier, converted; COCO AP of the final model.

A developer tool (not installed). Runs go ``--lanes`` at a time, one CPU thread each, each
in its own folder with its log. The study resumes: finished runs are kept, interrupted
classifier runs continue (``--resume``). ``summary.md`` and ``results.json`` give mean ±
standard deviation over the finished seeds and mark tables that are still partial.
Variants that an initialisation does not apply to (``rg_init zero`` needs Res-RGS) are
skipped. Exit status: 0 all runs finished, 1 one failed, 2 usage error.
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
from rgs_detectron.utils.commandline import run_tool
from rgs_detectron.errors import ConfigError, UserError, first_line
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling.spec import RG_INITS, RGSNetSpec
from rgs_detectron.utils.fileio import atomic_write
from rgs_detectron.utils.plots import read_metrics
from rgs_detectron.utils.torch_files import load_weights_only

PY = sys.executable
FM_PUBLISHED = "ResNet18: 94.9% accuracy (Fashion-MNIST's benchmark table; another recipe and model size)"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")


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


def _run(name, commands, folder):
    """Run ``commands`` in order, logging to ``folder/job.log``; True when all succeeded."""
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


def _train_net(args, variant, init, seed, folder, weights=None):
    cmd = [
        PY, "-m", "rgs_detectron.cli.train_net", "--config-file",
        get_config_file("demo/digits_res_rgs.yaml"), "--resume", "MODEL.RGSNET.VARIANT", variant,
        "MODEL.RGSNET.RG_INIT", init, "SEED",
        str(seed), "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", folder
    ]
    return cmd + (["MODEL.WEIGHTS", weights] if weights else [])


def jobs(args):
    """(name, commands, folder) of every run still to do; a classifier and its pretrained detector are one job."""
    todo = []
    for init in args.rg_init:
        for variant in [v for v in args.variants if _applies(v, init)]:
            for seed in args.seeds:
                out = _folder(args, "classification", variant, init, seed)
                commands = []
                if not os.path.isfile(os.path.join(out, "model_final.pth")):
                    commands.append([
                        PY, "-m", "rgs_detectron.cli.train_classifier", "--dataset", "fashion_mnist", "--data-root",
                        args.data_root, "--recipe", "cifar", "--epochs",
                        str(args.epochs), "--variant", variant, "--rg-init", init, "--depth", "26", "--width-mult",
                        "0.25", "--seed",
                        str(seed), "--workers", "0", "--no-progress", "--device", "cpu", "--output", out, "--resume"
                    ])
                pretrained = _folder(args, "detection", variant, init, seed, "pretrained")
                if args.pretrained and variant in args.det_variants and _final_ap(pretrained) is None:
                    weights = os.path.join(pretrained, "imagenet_weights.pth")
                    commands.append([
                        PY, "-m", "rgs_detectron.cli.convert",
                        os.path.join(out, "model_final.pth"), weights, "--overwrite"
                    ])
                    commands.append(_train_net(args, variant, init, seed, pretrained, weights))
                if commands:
                    todo.append((f"{_name(variant, init)} seed {seed}: classifier and its detector", commands, out))
        for variant in [v for v in args.det_variants if _applies(v, init)]:
            for seed in args.seeds:
                scratch = _folder(args, "detection", variant, init, seed, "scratch")
                if _final_ap(scratch) is None:
                    todo.append((f"{_name(variant, init)} seed {seed}: detector from scratch",
                                 [_train_net(args, variant, init, seed, scratch)], scratch))
    return todo


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


def summarize(args):
    """results.json and summary.md from whatever runs have finished."""
    results = {"classification": {}, "detection": {}, "settings": vars(args)}
    lines = [
        f"## Classification: Fashion-MNIST, depth 26, 0.25x, {args.epochs} epochs", "",
        "| variant | parameters | seeds done | first-epoch train loss (mean ± std) | test error % (mean ± std) "
        "| top-1 % per seed |", "|---|---|---|---|---|---|"
    ]
    partial = False
    for init in args.rg_init:
        for variant in [v for v in args.variants if _applies(v, init)]:
            records = [
                r for r in (_classifier_record(_folder(args, "classification", variant, init, s)) for s in args.seeds)
                if r
            ]
            partial |= len(records) < len(args.seeds)
            losses, errors = [r[0] for r in records], [r[1] for r in records]
            params = sum(p.numel() for p in RGSNetClassifier(RGSNetSpec.create(variant, 26, 0.25), 10).parameters())
            results["classification"][_name(
                variant, init)] = {"first_epoch_train_loss": losses, "test_error": errors, "parameters": params}
            lines.append(f"| {_name(variant, init)} | {params:,} | {len(records)}/{len(args.seeds)} | "
                         f"{_mean_std(losses)} | {_mean_std(errors)} | "
                         f"{', '.join(f'{100 - e:.2f}' for e in errors) or '–'} |")
    lines += [
        "", f"Published on Fashion-MNIST (not comparable: {FM_PUBLISHED}).", "",
        "## Detection: digits COCO AP, 0.25x depth 26 FPN, 600 iterations", "",
        "| variant | from scratch (mean ± std) | from its pretrained weights (mean ± std) | seeds done |",
        "|---|---|---|---|"
    ]
    starts = ["scratch"] + (["pretrained"] if args.pretrained else [])
    for init in args.rg_init:
        for variant in [v for v in args.det_variants if _applies(v, init)]:
            row = {}
            for start in starts:
                aps = [_final_ap(_folder(args, "detection", variant, init, s, start)) for s in args.seeds]
                row[start] = [a for a in aps if a is not None]
                partial |= len(row[start]) < len(args.seeds)
            results["detection"][_name(variant, init)] = row
            lines.append(f"| {_name(variant, init)} | {_mean_std(row['scratch'])} | "
                         f"{_mean_std(row.get('pretrained', []))} | "
                         f"{sum(map(len, row.values()))}/{len(starts) * len(args.seeds)} |")
    if partial:
        lines = ["**PARTIAL: not every run has finished; counts are in the tables.**", ""] + lines
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
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="detection from scratch only (no pretrained detectors)")
    p.add_argument("--lanes", type=_lanes, default=2, help="runs at a time (one CPU thread each)")
    p.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from finished runs")
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    ok = True
    if not args.summary_only:
        if args.det_variants:
            generate_digits_dataset(digits_root())
        with ThreadPoolExecutor(args.lanes) as pool:
            ok = all(pool.map(lambda job: _run(*job), jobs(args)))
    summarize(args)
    return 0 if ok else 1


def main(argv=None):
    return run_tool(_main, argv, "pretrain_study")


if __name__ == "__main__":
    sys.exit(main())
