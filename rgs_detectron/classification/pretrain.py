"""Pretraining the classifier: one loop for one process, many GPUs or many machines.

Run as one process, or by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``): then ``DistributedDataParallel`` over NCCL on GPUs, gloo on the CPU, each
process taking ``batch_size / world_size`` images of every global batch and a fixed shard
of the evaluation set (no padding, so top-1/top-5 are exact).

What a run leaves in its output folder (written by rank 0, each file atomically):

* ``last.pth``: everything needed to resume (weights, optimizer, scheduler, AMP scaler,
  epoch, metrics so far, the settings), rewritten after every epoch; ``--resume``
  continues from it and a run killed at any moment resumes at the next epoch after the
  last complete one;
* ``model_final.pth``: the weights with their ``RGSNetSpec``, class count, recipe, settings
  and final metrics: the file the converter takes as it is;
* ``metrics.json`` (one record per epoch), ``log.txt``, TensorBoard events in ``tensorboard/``.

Each epoch's randomness (data order, augmentation) is seeded from ``(seed, epoch)``, so a
resumed run sees the same batches the uninterrupted run would have. What is recorded is
what happened: a resume whose settings (``PretrainOptions.settings``) differ from the
run's is refused, naming each. A new run over a run or finished model needs ``overwrite``,
and then moves that run's files into ``previous_run_<time>/`` first, never deleting them
(``utils/previous_run.py``, as ``train_net --overwrite``).
"""
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from ..config import resolve_device
from ..errors import ConfigError, InputError, UserError, WeightsError, first_line
from ..modeling.spec_record import read_record
from ..utils.fileio import atomic_write, check_room, remove_stale_temp_files
from ..utils.output_lock import output_dir_lock
from ..utils.previous_run import finish_interrupted_move, move_previous_run
from ..utils.torch_files import RefusedByTorch, load_state_dict, load_weights_only, weights_source
from .classifier import RGSNetClassifier
from .recipes import Recipe
from .warm_start import LABEL, warm_start_from_resnet

__all__ = ["PretrainOptions", "pretrain"]

logger = logging.getLogger("rgs_detectron.pretrain")
RUN_FILES = ("last.pth", "model_final.pth", "metrics.json")  # what makes a folder hold a run
MOVED_ASIDE = RUN_FILES + ("log.txt", "tensorboard")  # what --overwrite moves into previous_run_<time>/


@dataclass
class PretrainOptions:
    output: str
    recipe: Recipe  # already scaled to the run's epochs and batch size
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    workers: int = 2
    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # start anew over the run in ``output`` (moved into previous_run_<time>/ there)
    warm_start: Optional[str] = None
    progress: bool = True
    log_period: int = 50
    description: str = ""  # dataset and settings, recorded in the checkpoints
    settings: dict = field(default_factory=dict)  # option -> value: recorded; a resume must repeat them


class _Distributed:

    def __init__(self, device_request):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.main = self.rank == 0
        device = resolve_device(device_request)
        if device == "cuda":
            device = f"cuda:{self.local_rank}"
            torch.cuda.set_device(self.local_rank)
        self.device = torch.device(device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def sum(self, values):
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor.tolist()


def _topk_correct(logits, targets, ks=(1, 5)):
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top.eq(targets[:, None])
    return [hits[:, :k].any(dim=1).sum().item() for k in ks]


class _Run:
    """One pretraining run (see the module docstring)."""

    def __init__(self, spec, train_set, val_set, num_classes, options: PretrainOptions):
        self.spec, self.options, self.num_classes = spec, options, num_classes
        self.dist = _Distributed(options.device)
        recipe = options.recipe
        if recipe.batch_size % self.dist.world:
            raise ConfigError(f"--batch-size {recipe.batch_size} must divide among {self.dist.world} processes")
        self.batch = recipe.batch_size // self.dist.world
        if len(train_set) < recipe.batch_size:
            raise ConfigError(f"--batch-size {recipe.batch_size} is larger than the training set ({len(train_set)} "
                              "images): no full batch could be formed; lower --batch-size")
        torch.manual_seed(options.seed)  # the same initial weights in every process
        self.model = RGSNetClassifier(spec, num_classes=num_classes)
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.model.to(self.dist.device, memory_format=self.memory_format)
        self.net = (DistributedDataParallel(
            self.model, device_ids=[self.dist.local_rank] if self.dist.device.type == "cuda" else None)
                    if self.dist.world > 1 else self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(recipe.milestones), recipe.gamma)
        cuda_amp = options.amp and self.dist.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda_amp)
        amp_dtype = (torch.float16 if cuda_amp else torch.bfloat16) if options.amp else torch.float32
        self.autocast = functools.partial(torch.autocast, self.dist.device.type, dtype=amp_dtype, enabled=options.amp)
        self.sampler = DistributedSampler(train_set, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True,
                                          seed=options.seed, drop_last=True)
        self.train_set = train_set
        self.val_shard = Subset(val_set, range(self.dist.rank, len(val_set), self.dist.world))
        self.val_size = len(val_set)
        self.history, self.start_epoch = [], 0
        self.writer = None

    # ------------------------------------------------------------------ checkpoints

    def _record(self):
        return {
            "rgsnet_spec": self.spec.to_dict(), "num_classes": self.num_classes,
            "recipe": dataclasses.asdict(self.options.recipe), "description": self.options.description,
            "settings": self.options.settings,
            "warm_start": (f"{self.options.warm_start}: {LABEL}" if self.options.warm_start else None)
        }

    def _save(self, name, state):
        path = os.path.join(self.options.output, name)
        atomic_write(path, lambda f: torch.save(state, f))
        return path

    def _prepare_output(self):
        """Resume or refuse the run ``output`` holds, before anything is written (with ``overwrite``, ``pretrain``
        has moved it aside)."""
        o = self.options
        found = [name for name in RUN_FILES if os.path.exists(os.path.join(o.output, name))]
        if o.overwrite:
            return
        if found and not o.resume:
            raise ConfigError(f"{o.output!r} holds a run ({', '.join(found)}): pass --resume to continue it, "
                              "--overwrite to start a new run there (that one is moved into previous_run_<time>/), "
                              "or choose another --output")
        elif found and "last.pth" not in found:
            raise ConfigError(f"{o.output!r} holds {', '.join(found)} but no last.pth to resume from: pass "
                              "--overwrite to train again, or choose another --output")
        elif found:
            self._resume(os.path.join(o.output, "last.pth"))

    def _resume(self, path):
        try:
            state = load_weights_only(path)
        except RefusedByTorch as e:  # the run's own intact file: resumed with that torch, never thrown away
            raise InputError(f"{e}: resume this run with it") from None
        except WeightsError as e:
            raise InputError(f"{e}; the run cannot resume from it: pass --overwrite to train again") from None
        recorded = read_record(state.get("rgsnet_spec"), f"{path}: rgsnet_spec") if isinstance(state, dict) else None
        if recorded is None or "optimizer" not in state:
            raise InputError(f"{path} is not a train_classifier run: pass --overwrite to replace it, or choose "
                             "another --output")
        ours, theirs = self.spec.to_dict(), recorded.to_dict()
        differ = [f"{k} {ours.get(k)} (the run: {v})" for k, v in theirs.items() if ours.get(k) != v]
        if state.get("num_classes") != self.num_classes:
            differ.append(f"{self.num_classes} classes (the run: {state.get('num_classes')})")
        before = state.get("settings")
        if before is not None:
            differ += [
                f"{k} {v} (the run: {before.get(k)})" for k, v in self.options.settings.items() if before.get(k) != v
            ]
        elif state.get("description") != self.options.description:  # recorded before settings were
            differ.append(f"this command trains {self.options.description!r}, the run {state.get('description')!r}")
        if differ:
            raise ConfigError(f"{path} is another run than this command describes: {'; '.join(differ)}. Resume "
                              "with the run's options, pass --overwrite to start again, or choose another --output")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict({**state["scheduler"], "milestones": Counter(state["scheduler"]["milestones"])})
        self.scaler.load_state_dict(state["scaler"])
        self.history = list(state["history"])
        self.start_epoch = state["epoch"] + 1
        if self.start_epoch < self.options.recipe.epochs:
            logger.info(f"Resuming from {path}: epoch {self.start_epoch + 1} of {self.options.recipe.epochs}")

    # ------------------------------------------------------------------ epochs

    def _batches(self, dataset, sampler, seed):
        """``(images, targets)`` of ``dataset`` on the device. A data error in a worker process comes back from
        torch inside the worker's traceback (``utils.commandline.user_message`` prints its original line)."""
        batches = iter(
            DataLoader(dataset, batch_size=self.batch, sampler=sampler, num_workers=self.options.workers,
                       pin_memory=self.dist.device.type == "cuda", drop_last=sampler is not None,
                       generator=torch.Generator().manual_seed(seed)))
        try:
            for images, targets in batches:
                yield (images.to(self.dist.device, non_blocking=True,
                                 memory_format=self.memory_format), targets.to(self.dist.device, non_blocking=True))
        finally:  # after a worker's error the iterator sits in a reference cycle, and the collector's shutdown of
            # its workers waits 5 s for each: stop them now, as DataLoader itself does (no public way)
            getattr(batches, "_shutdown_workers", lambda: None)()

    def _train_epoch(self, epoch):
        seed = self.options.seed * 1000 + epoch
        torch.manual_seed(seed + self.dist.rank)
        self.sampler.set_epoch(epoch)
        steps = len(self.sampler) // self.batch  # full batches only
        self.net.train()
        totals = [0.0, 0.0, 0.0]  # loss sum, correct, count
        bar = tqdm(self._batches(self.train_set, self.sampler, seed), total=steps, unit="batch", leave=False,
                   desc=f"epoch {epoch + 1}/{self.options.recipe.epochs}",
                   disable=not (self.options.progress and self.dist.main))
        for step, (images, targets) in enumerate(bar):
            with self.autocast():
                logits = self.net(images)
                loss = F.cross_entropy(logits, targets)
            if not math.isfinite(loss.item()):
                raise UserError(
                    f"pretraining diverged (loss {loss.item()}) in epoch {epoch + 1}: lower the learning rate "
                    f"(--lr, now {self.optimizer.param_groups[0]['lr']:g}) or use the recipe's batch size")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = targets.numel()
            totals[0] += loss.item() * n
            totals[1] += (logits.argmax(1) == targets).sum().item()
            totals[2] += n
            if self.dist.main and step % self.options.log_period == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if self.writer:
                    self.writer.add_scalar("train/loss", loss.item(), epoch * steps + step)
        loss_sum, correct, count = self.dist.sum(totals)
        return {"train_loss": loss_sum / count, "train_top1": 100.0 * correct / count}

    @torch.no_grad()
    def _evaluate(self):
        self.net.eval()
        totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, top-1, top-5, count
        for images, targets in self._batches(self.val_shard, None, 0):
            with self.autocast():
                logits = self.model(images).float()
            top1, top5 = _topk_correct(logits, targets)
            totals = [
                totals[0] + F.cross_entropy(logits, targets, reduction="sum").item(), totals[1] + top1,
                totals[2] + top5, totals[3] + targets.numel()
            ]
        loss_sum, top1, top5, count = self.dist.sum(totals)
        assert int(count) == self.val_size, (count, self.val_size)
        return {"val_loss": loss_sum / count, "val_top1": 100.0 * top1 / count, "val_top5": 100.0 * top5 / count}

    def run(self):
        o = self.options
        if self.dist.main:
            removed = remove_stale_temp_files(o.output)
            if removed:
                logger.info(f"Removed temporary files of a killed run: {', '.join(removed)}")
        self._prepare_output()
        start, squares = self.dist.sum([self.start_epoch, self.start_epoch**2])  # equal everywhere iff variance 0
        if start * start != squares * self.dist.world:
            raise ConfigError(f"--resume: the processes see different runs in {o.output!r}: on several machines "
                              "--output must be one folder that every machine shares")
        # Only a fresh run reads the warm start: a resume has its weights (a moved file cannot block it).
        warm_start_lines = []
        if o.warm_start and self.start_epoch == 0:
            path, source = weights_source(o.warm_start)
            warm_start_lines = warm_start_from_resnet(self.model, load_state_dict(path), source)
        final_path = os.path.join(o.output, "model_final.pth")
        if self.start_epoch >= o.recipe.epochs and os.path.exists(final_path):
            logger.info(f"{final_path} is this run, finished: nothing to do")
            return self.history[-1]
        if self.dist.main:
            from torch.utils.tensorboard import SummaryWriter

            logger.info(o.recipe.describe())
            for line in warm_start_lines:
                logger.info(line)
            logger.info(f"{len(self.train_set)} training and {self.val_size} evaluation images; "
                        f"{self.dist.world} process(es) on {self.dist.device.type}, {self.batch} images each per step")
            self.writer = SummaryWriter(os.path.join(o.output, "tensorboard"))
        for epoch in range(self.start_epoch, o.recipe.epochs):
            start = time.perf_counter()
            metrics = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **self._train_epoch(epoch)}
            self.scheduler.step()
            metrics.update(self._evaluate())
            metrics["seconds"] = round(time.perf_counter() - start, 1)
            if o.warm_start:
                metrics["warm_start"] = self._record()["warm_start"]
            self.history.append(metrics)
            if self.dist.main:
                for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr"):
                    self.writer.add_scalar(key.replace("_", "/", 1), metrics[key], epoch + 1)
                # MultiStepLR keeps its milestones in a collections.Counter, which the weights-only loader of
                # torch < 2.4 refuses: saved as a dict (and made a Counter again on resume), every torch reads it.
                self._save(
                    "last.pth", {
                        "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": {**self.scheduler.state_dict(), "milestones": dict(self.scheduler.milestones)},
                        "scaler": self.scaler.state_dict(), "epoch": epoch, "history": self.history, **self._record()
                    })
                atomic_write(os.path.join(o.output, "metrics.json"), lambda f: json.dump(self.history, f, indent=1),
                             mode="w")
                logger.info(f"epoch {epoch + 1}/{o.recipe.epochs}: train loss {metrics['train_loss']:.4f} "
                            f"top-1 {metrics['train_top1']:.2f} | eval top-1 {metrics['val_top1']:.2f} top-5 "
                            f"{metrics['val_top5']:.2f} | {metrics['seconds']:.0f} s")
        final = self.history[-1] if self.history else {}
        if self.dist.main:
            path = self._save("model_final.pth",
                              {"state_dict": self.model.state_dict(), "metrics": final, **self._record()})
            logger.info(f"Wrote {path}")
            self.writer.close()
        if self.dist.world > 1:
            dist.barrier()
        return final


class _LogFile(logging.FileHandler):
    """``OUTPUT/log.txt``. A line it cannot write (a full disk) stops the run with one message naming
    the file, not logging's traceback for every line."""

    def __init__(self, path):
        super().__init__(path)
        self.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", "%m/%d %H:%M:%S"))

    def handleError(self, record):
        raise InputError(f"cannot write {self.baseFilename}: {first_line(sys.exc_info()[1])}; free space or "
                         "choose another --output") from None

    def close(self):
        with contextlib.suppress(OSError):  # the unwritten lines of a full disk; handleError has said so
            super().close()


def pretrain(spec, train_set, val_set, num_classes, options: PretrainOptions):
    """Train ``RGSNetClassifier(spec)``; return the last epoch's metrics (see the module docstring)."""
    os.makedirs(options.output, exist_ok=True)
    run = _Run(spec, train_set, val_set, num_classes, options)
    if not run.dist.main:
        return run.run()
    # last.pth (weights and momentum) twice while it is replaced, model_final.pth, and 16 MiB of logs.
    weights = sum(t.numel() * t.element_size() for t in run.model.state_dict().values())
    check_room(options.output, 5 * weights + (16 << 20))
    log = logging.getLogger("rgs_detectron")
    finish_interrupted_move(options.output, "train_classifier")
    with output_dir_lock(options.output):
        if options.overwrite:  # before the new log.txt opens
            move_previous_run(options.output, MOVED_ASIDE, "train_classifier")
        handler = _LogFile(os.path.join(options.output, "log.txt"))
        log.addHandler(handler)
        try:
            return run.run()
        finally:
            log.removeHandler(handler)
            handler.close()
