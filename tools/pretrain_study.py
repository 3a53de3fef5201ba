"""The paper's claim on real data, measured: pretraining on Fashion-MNIST, then detection.

    python tools/pretrain_study.py --output output/study            # everything, 2 lanes
    python tools/pretrain_study.py --output output/study --summary-only

1. Classification: each of ``--variants`` (default original, b-RGS, d-RGS, Res-RGS) at depth
   26, 0.25x width, ImageNet stem, trained with ``train_classifier`` on Fashion-MNIST at
   32x32 with the paper's CIFAR recipe shortened to ``--epochs`` (default 16 of 164), for
   each of ``--seeds``; test error of the last epoch.
2. Detection on the built-in digits: each of ``--det-variants`` (default original, b-RGS,
   Res-RGS) trained with ``configs/demo/digits_res_rgs.yaml`` from scratch and from its own
   pretrained classifier (converted), same seeds; COCO AP of the final model.

Runs go in ``--lanes`` processes at a time, one CPU thread each, every run in its own
folder with its log. The study resumes: finished runs are kept, interrupted classifier
runs continue (``--resume``), so it can be stopped and restarted across sessions.
``summary.md`` and ``results.json`` give mean ± standard deviation over the finished seeds
and mark tables that are still partial. Exit status: 0 all runs finished, 1 one failed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from rgs_detectron.data.builtin import digits_root
from rgs_detectron.data.digits import generate_digits_dataset
from rgs_detectron.classification.classifier import RGSNetClassifier
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling.spec import RGSNetSpec
from rgs_detectron.utils.fileio import atomic_write
from rgs_detectron.engine.defaults import run_tool
from rgs_detectron.utils.plots import read_metrics

PY = sys.executable
FM_PUBLISHED = "ResNet18: 94.9% accuracy (Fashion-MNIST's benchmark table; another recipe and model size)"


class Job:
    def __init__(self, name, commands, folder, done, after=()):
        self.name, self.commands, self.folder, self.done, self.after = name, commands, folder, done, set(after)
        self.proc, self.step, self.failed, self.started = None, 0, False, None


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _run_jobs(jobs, lanes):
    """Run jobs (each a list of commands, in order) ``lanes`` at a time, dependencies first."""
    pending = [j for j in jobs if not j.done()]
    names = {j.name for j in pending}
    running = []
    while pending or running:
        for job in list(running):
            if job.proc.poll() is None:
                continue
            job.log.close()
            if job.proc.returncode != 0:
                job.failed = True
                print(f"[study] FAILED {job.name} (exit {job.proc.returncode}); see {job.folder}/job.log", flush=True)
                running.remove(job)
            elif job.step + 1 < len(job.commands):
                job.step += 1
                _start(job)
            else:
                running.remove(job)
                print(f"[study] done {job.name} in {time.time() - job.started:.0f} s", flush=True)
        for job in list(pending):
            if len(running) >= lanes:
                break
            blocking = job.after & names
            if any(j.failed for j in jobs if j.name in blocking):
                job.failed = True
                pending.remove(job)
                print(f"[study] skipped {job.name}: a run it needs failed", flush=True)
            elif not any(j.name in blocking for j in pending + running):
                pending.remove(job)
                job.started = time.time()
                _start(job)
                running.append(job)
        time.sleep(2)
    return [j for j in jobs if j.failed]


def _start(job):
    os.makedirs(job.folder, exist_ok=True)
    job.log = open(os.path.join(job.folder, "job.log"), "a")
    print(f"[study] start {job.name} ({job.step + 1}/{len(job.commands)})", flush=True)
    job.proc = subprocess.Popen(job.commands[job.step], stdout=job.log, stderr=subprocess.STDOUT, env=_env())


def _classifier_dir(args, variant, seed):
    return os.path.join(args.output, "classification", f"{variant}_seed{seed}")


def _detector_dir(args, variant, seed, start):
    return os.path.join(args.output, "detection", f"{variant}_seed{seed}", start)


def _final_ap(folder):
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(os.path.join(folder, "model_final.pth")) or not os.path.isfile(path):
        return None
    rows = [r for r in read_metrics(path) if "bbox/AP" in r]
    return rows[-1]["bbox/AP"] if rows else None


def build_jobs(args):
    jobs = []
    for variant in args.variants:
        for seed in args.seeds:
            out = _classifier_dir(args, variant, seed)
            cmd = [PY, "-m", "rgs_detectron.cli.train_classifier", "--dataset", "fashion_mnist", "--data-root",
                   args.data_root, "--recipe", "cifar", "--epochs", str(args.epochs), "--variant", variant,
                   "--depth", "26", "--width-mult", "0.25", "--seed", str(seed), "--workers", "0", "--no-progress",
                   "--device", "cpu", "--output", out, "--resume"]
            jobs.append(Job(f"classify {variant} seed {seed}", [cmd], out,
                            lambda o=out: os.path.isfile(os.path.join(o, "model_final.pth"))))
    config = get_config_file("demo/digits_res_rgs.yaml")
    for variant in args.det_variants:
        for seed in args.seeds:
            common = ["--config-file", config, "--resume", "MODEL.RGSNET.VARIANT", variant, "SEED", str(seed), "MODEL.DEVICE",
                      "cpu", "DATALOADER.NUM_WORKERS", "0"]
            scratch = _detector_dir(args, variant, seed, "scratch")
            jobs.append(Job(f"detect {variant} seed {seed} from scratch",
                            [[PY, "-m", "rgs_detectron.cli.train_net", *common, "OUTPUT_DIR", scratch]], scratch,
                            lambda o=scratch: _final_ap(o) is not None))
            pretrained = _detector_dir(args, variant, seed, "pretrained")
            weights = os.path.join(pretrained, "imagenet_weights.pth")
            classifier = os.path.join(_classifier_dir(args, variant, seed), "model_final.pth")
            convert = [PY, "-m", "rgs_detectron.cli.convert", classifier, weights, "--overwrite"]
            train = [PY, "-m", "rgs_detectron.cli.train_net", *common, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", pretrained]
            jobs.append(Job(f"detect {variant} seed {seed} pretrained", [convert, train], pretrained,
                            lambda o=pretrained: _final_ap(o) is not None,
                            after=[f"classify {variant} seed {seed}"]))
    return jobs


def _mean_std(values):
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def summarize(args):
    """results.json and summary.md from whatever runs have finished."""
    results = {"classification": {}, "detection": {}, "settings": vars(args)}
    lines = [f"## Classification: Fashion-MNIST test error (%), depth 26, 0.25x, {args.epochs} epochs", "",
             "| variant | parameters | seeds done | test error (mean ± std) | top-1 per seed |", "|---|---|---|---|---|"]
    partial = False
    for variant in args.variants:
        errors, per_seed = [], []
        for seed in args.seeds:
            path = os.path.join(_classifier_dir(args, variant, seed), "model_final.pth")
            if os.path.isfile(path):
                import torch

                top1 = torch.load(path, map_location="cpu", weights_only=True)["metrics"]["val_top1"]
                errors.append(100.0 - top1)
                per_seed.append(f"{top1:.2f}")
        partial |= len(errors) < len(args.seeds)
        params = sum(p.numel() for p in RGSNetClassifier(RGSNetSpec.create(variant, 26, 0.25), 10).parameters())
        results["classification"][variant] = {"test_error": errors, "parameters": params}
        lines.append(f"| {variant} | {params:,} | {len(errors)}/{len(args.seeds)} | {_mean_std(errors)} | "
                     f"{', '.join(per_seed) or '–'} |")
    lines += ["", f"Published on Fashion-MNIST (not comparable: {FM_PUBLISHED}).", "",
              "## Detection: digits COCO AP, 0.25x depth 26 FPN, 600 iterations", "",
              "| variant | from scratch (mean ± std) | from its pretrained weights (mean ± std) | seeds done |",
              "|---|---|---|---|"]
    for variant in args.det_variants:
        row = {}
        for start in ("scratch", "pretrained"):
            aps = [a for a in (_final_ap(_detector_dir(args, variant, s, start)) for s in args.seeds) if a is not None]
            row[start] = aps
            partial |= len(aps) < len(args.seeds)
        results["detection"][variant] = row
        lines.append(f"| {variant} | {_mean_std(row['scratch'])} | {_mean_std(row['pretrained'])} | "
                     f"{len(row['scratch'])}+{len(row['pretrained'])}/{2 * len(args.seeds)} |")
    if partial:
        lines = ["**PARTIAL: not every run has finished; counts are in the tables.**", ""] + lines
    results["partial"] = partial
    atomic_write(os.path.join(args.output, "results.json"), lambda f: json.dump(results, f, indent=1), mode="w")
    atomic_write(os.path.join(args.output, "summary.md"), lambda f: f.write("\n".join(lines) + "\n"), mode="w")
    print("\n".join(lines))
    return results


def _main(argv):
    p = argparse.ArgumentParser(prog="pretrain_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="output/study")
    p.add_argument("--data-root", default=os.getenv("DETECTRON2_DATASETS", "datasets"),
                   help="where Fashion-MNIST is (or is unpacked to from Debian's package)")
    p.add_argument("--variants", nargs="+", default=["original", "b-RGS", "d-RGS", "Res-RGS"])
    p.add_argument("--det-variants", nargs="+", default=["original", "b-RGS", "Res-RGS"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--lanes", type=int, default=2, help="runs at a time (one CPU thread each)")
    p.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from finished runs")
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    failed = []
    if not args.summary_only:
        if args.det_variants:
            generate_digits_dataset(digits_root())
        failed = _run_jobs(build_jobs(args), args.lanes)
    summarize(args)
    return 1 if failed else 0


def main(argv=None):
    return run_tool(_main, argv, "pretrain_study")


if __name__ == "__main__":
    sys.exit(main())
