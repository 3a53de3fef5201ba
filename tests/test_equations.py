"""Every variant's block against its equation, written here by hand with torch.nn.functional.

The blocks of the Detectron2 backbone and of the classifier share one forward, so comparing
them with each other cannot catch a wrong term. These tests compute each block's output from
the block's own parameters with ``F.conv2d``, ``F.batch_norm``, ``F.group_norm`` and
``F.relu``, following the equations of docs/ARCHITECTURE.md; nothing here calls the
project's forward code or reads the variant table, so dropping or moving any term fails.

    bottleneck:
    a = ReLU(BN1(conv1x1(x)))                [2GN: a = GN(a)]
    b = ReLU(BN2(conv3x3(a)) [+ GN(a)])      [+ GN(a) in d-/Res-RGS where the 3x3 conv has stride 1; 2GN: b = GN(b)]
    F = BN3(conv1x1(b))                      [SE: F = F * sigmoid(fc2(ReLU(fc1(avgpool(F)))))]

    basic block (depths 18, 34; docs/ARCHITECTURE.md, "Decisions"):
    a = ReLU(BN1(conv3x3_stride(x)))         [2GN: a = GN(a)]
    F = BN2(conv3x3(a)) [+ GN(a)]            [+ GN(a) in d-/Res-RGS: the second conv always has stride 1; SE as above]

Outputs: original and 2GN ReLU(F + x); b-RGS F + GN(ReLU(x)); d-RGS the same with F_inner;
Res-RGS F_inner + GN(ReLU(x)) + x; RBS F + BN(ReLU(x)); GS F + GN(x); RGB GN(ReLU(F + x));
Preact x + F_pre(x), F_pre = (BN-ReLU-conv) x3 (x2 in a basic block). Projection blocks use
h = BN(conv1x1_stride(x)), then the variant's f.

Float64, so that a difference is a wrong term, not rounding; BN in train (batch statistics)
and eval mode (random running statistics).
"""
import pytest
import torch
import torch.nn.functional as F

from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.modeling import RGSNetSpec, make_rgsnet_stages

VARIANT_NAMES = ["original", "b-RGS", "d-RGS", "Res-RGS", "RBS", "GS", "RGB", "2GN", "Preact"]
RG_SHORTCUT = {"b-RGS", "d-RGS", "Res-RGS"}  # h = GN(ReLU(x)) on identity-shape blocks
INNER = {"d-RGS", "Res-RGS"}
POST_RELU = {"original", "2GN"}


def _randomize(module, seed):
    """Every weight, bias and running statistic random, so that no term hides at its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var") or (t.dim() == 1 and name.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)  # norm scales, variances
            elif t.dim() == 4:
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * (2.0 / t[0].numel())**0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.3)


class Names:
    """Where a block keeps each parameter: Detectron2's names or torchvision's."""

    def __init__(self, block, torchvision):
        self.block, self.tv = block, torchvision

    def conv(self, k):
        return getattr(self.block, f"conv{k}")

    def conv_norm(self, k):  # the BN after conv k (non-preact blocks)
        return getattr(self.block, f"bn{k}") if self.tv else self.conv(k).norm

    def pre_norm(self, k):  # the BN before conv k (Preact), or None
        return getattr(self.block, f"bn{k}" if self.tv else f"norm{k}")

    def projection(self):  # (conv, BN or None), or None
        if self.tv:
            down = self.block.downsample
            return None if down is None else (down[0], down[1] if len(down) > 1 else None)
        short = self.block.shortcut
        return None if short is None else (short, getattr(short, "norm", None))


def _bn(x, norm, train):
    if train:
        return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)


def _gn(x, norm):
    return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


def _conv(x, conv, stride, padding):
    return F.conv2d(x, conv.weight, None, stride, padding)


def _se(f, se):
    s = F.adaptive_avg_pool2d(f, 1)
    s = F.conv2d(F.relu(F.conv2d(s, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias)
    return f * torch.sigmoid(s)


def expected_output(variant, n: Names, x, *, stride, stride_in_1x1, train, preactivated_input=True, basic=False):
    """The block's output computed from its parameters by the equations of the module docstring."""
    block = n.block
    projection = n.projection()
    # (stride, padding) of conv1, conv2 (and conv3): the stride sits in the first 3x3 conv
    s1, s3 = (stride, 1) if stride_in_1x1 or basic else (1, stride)
    convs = [(s1, 1), (1, 1)] if basic else [(s1, 0), (s3, 1), (1, 0)]
    if variant == "Preact":
        out = pre = F.relu(_bn(x, n.pre_norm(1), train)) if preactivated_input else x
        for k, (s, pad) in enumerate(convs, 1):
            out = _conv(out if k == 1 else F.relu(_bn(out, n.pre_norm(k), train)), n.conv(k), s, pad)
        if block.se is not None:
            out = _se(out, block.se)
        return out + (_conv(pre, projection[0], stride, 0) if projection else x)

    a = F.relu(_bn(_conv(x, n.conv(1), *convs[0]), n.conv_norm(1), train))
    if variant == "2GN":
        a = _gn(a, block.relu_norm1)
    z = _bn(_conv(a, n.conv(2), *convs[1]), n.conv_norm(2), train)
    if variant in INNER and convs[1][0] == 1:
        z = z + _gn(a, block.inner_norm)  # GN(ReLU(a)) = GN(a): a is a ReLU output
    if basic:
        f = z
    else:
        b = F.relu(z)
        if variant == "2GN":
            b = _gn(b, block.relu_norm2)
        f = _bn(_conv(b, n.conv(3), *convs[2]), n.conv_norm(3), train)
    if block.se is not None:
        f = _se(f, block.se)

    if projection:
        conv, norm = projection
        h = _bn(_conv(x, conv, stride, 0), norm, train)
    elif variant in RG_SHORTCUT:
        h = _gn(F.relu(x), block.shortcut_norm)
        if variant == "Res-RGS":
            h = h + x
    elif variant == "RBS":
        h = _bn(F.relu(x), block.shortcut_norm, train)
    elif variant == "GS":
        h = _gn(x, block.shortcut_norm)
    else:
        h = x
    y = f + h
    if variant in POST_RELU:
        return F.relu(y)
    if variant == "RGB":
        return _gn(F.relu(y), block.output_norm)
    return y


def _lean_ran(out):
    """Whether the lean autograd function is in ``out``'s graph."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if "Lean" in type(fn).__name__:
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False


def _blocks(variant, model, impl, se):
    """((block, Names, stride, stride_in_1x1, preactivated input), ...) of three blocks:
    res2's first (stride 1; a projection from the stem with bottlenecks, identity-shape with
    basic blocks), an identity-shape block, res3's first (projection, stride 2)."""
    stride_in_1x1 = model == "detectron2-stride-in-1x1"
    spec = RGSNetSpec.create(variant, 18 if model.endswith("basic") else 26, 0.25, norm="BN", shortcut_impl=impl,
                             se_reduction=se, stride_in_1x1=stride_in_1x1)
    if model.startswith("classifier"):
        net = RGSNetClassifier(spec, num_classes=4)
        stages, tv = [net.layer1, net.layer2], True
    else:
        stages, tv = make_rgsnet_stages(spec, 2, 3), False
        stages = [torch.nn.Sequential(*s) for s in stages]
    chosen = [(stages[0][0], 1, False), (stages[0][1], 1, True), (stages[1][0], 2, True)]
    return [(b, Names(b, tv), stride, stride_in_1x1, pre) for b, stride, pre in chosen]


MODELS = ["detectron2", "detectron2-stride-in-1x1", "classifier", "detectron2-basic", "classifier-basic"]


@pytest.fixture
def fused_pieces(monkeypatch):
    """The fused forward (the lean function's too) in its smallest pieces, one group of one sample; counts calls."""
    from rgs_detectron.modeling import shortcuts

    calls, fused = [], shortcuts.rg_shortcut_fused
    monkeypatch.setattr(shortcuts, "CHUNK_BYTES", 1)
    monkeypatch.setattr(shortcuts, "rg_shortcut_fused", lambda *args, **kw: calls.append(1) or fused(*args, **kw))
    return calls


@pytest.mark.parametrize("impl", ["reference", "lean", "fused"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_block_equations(variant, model, impl, fused_pieces):
    """``fused`` is the inference forward: no gradients, the RG shortcut in pieces."""
    torch.manual_seed(0)
    blocks = _blocks(variant, model, "auto" if impl == "fused" else impl, se=0)
    for i, (block, names, stride, stride_in_1x1, pre) in enumerate(blocks):
        block = block.double()
        _randomize(block, seed=i)
        x = torch.randn(2, block.conv1.in_channels, 8, 8, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(10 + i))
        for train in (False, True):  # eval first: a train-mode forward moves the running statistics
            block.train(train)
            with torch.no_grad():
                want = expected_output(variant, names, x, stride=stride, stride_in_1x1=stride_in_1x1, train=train,
                                       preactivated_input=pre or variant != "Preact", basic=model.endswith("basic"))
            with torch.set_grad_enabled(impl != "fused"):
                got = block(x.clone())
            where = f"block {i} ({'train' if train else 'eval'} mode)"
            assert got.shape == want.shape, where
            torch.testing.assert_close(got.detach(), want, rtol=1e-9, atol=1e-9, msg=lambda m: f"{where}: {m}")
            uses_rg = variant in RG_SHORTCUT | {"RGB"}
            if impl == "lean" and uses_rg and i == 1:
                assert _lean_ran(got), f"{where}: the lean shortcut did not run"
    assert bool(fused_pieces) == (impl != "reference" and variant in RG_SHORTCUT | {"RGB"})  # lean runs it too


@pytest.mark.parametrize("variant", ["b-RGS", "Res-RGS", "Preact", "RGB"])
def test_block_equations_with_squeeze_excitation(variant):
    torch.manual_seed(0)
    for model in ("detectron2", "classifier", "classifier-basic"):
        for i, (block, names, stride, stride_in_1x1, pre) in enumerate(_blocks(variant, model, "reference", se=4)):
            block = block.double().train()
            _randomize(block, seed=i)
            x = torch.randn(2, block.conv1.in_channels, 8, 8, dtype=torch.float64)
            with torch.no_grad():
                want = expected_output(variant, names, x, stride=stride, stride_in_1x1=stride_in_1x1, train=True,
                                       preactivated_input=pre or variant != "Preact", basic=model.endswith("basic"))
                torch.testing.assert_close(block(x), want, rtol=1e-9, atol=1e-9)
