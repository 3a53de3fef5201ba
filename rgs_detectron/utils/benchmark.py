"""Timing and memory measurement of Detectron2 models (the benchmark tool's library).

``Runner`` times training steps, backbone-only forward/backward and batch-1 inference,
synchronizing CUDA around each step, and counts the bytes autograd saves for backward;
``synthetic_batch`` makes reproducible training inputs. The SGD learning rate is 0, so
every timed step does a real update's work on unchanged weights (identical work per
iteration, no divergence from random init).
"""
import platform
import time
from contextlib import nullcontext

import torch

from detectron2.structures import Boxes, Instances

__all__ = ["Runner", "synthetic_batch", "saved_activation_bytes", "cpu_model"]


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
        k = int(torch.randint(3, 11, (1,), generator=g))
        wh = torch.minimum(16 + torch.rand(k, 2, generator=g) * 0.4 * size, size - 1)
        xy = torch.rand(k, 2, generator=g) * (size - wh)
        instances = Instances(
            (height, width),
            gt_boxes=Boxes(torch.cat([xy, xy + wh], dim=1)),
            gt_classes=torch.randint(0, num_classes, (k,), generator=g),
        )
        # Already on the device: the host-to-device copy is not what is being measured.
        batch.append(
            {"image": image.to(device), "height": height, "width": width, "instances": instances.to(device)}
        )
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
