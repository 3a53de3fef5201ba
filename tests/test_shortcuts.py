"""The lean and fused RG shortcuts against the reference one: values, gradients, dispatch, memory.

Tolerances: float32 comparisons use ``rtol=atol=1e-5`` on single ops; whole backbones
(train-mode BN over tiny batches amplifies rounding) compare each tensor's max abs
difference to 5e-5 x that tensor's max magnitude (measured worst case: 1.6e-5). The fused
forward runs the reference's kernels piece by piece: it is held to exact equality.
"""
import sys
import types

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from rgs_detectron import VARIANTS, add_rgsnet_config
from rgs_detectron.export import PT2_NEEDS_TORCH
from rgs_detectron.modeling import build_rgsnet_backbone, shortcuts
from rgs_detectron.modeling.shortcuts import ReLUGroupNorm, rg_shortcut_fused, rg_shortcut_lean, rg_shortcut_reference

EPS = 1e-5
PYTHON = "%d.%d" % sys.version_info[:2]
DYNAMO_LACKING = torch.__version__ < PT2_NEEDS_TORCH.get(PYTHON, "0")  # the matrix's floor: torch 2.3, Python 3.12


@pytest.fixture
def pieces(monkeypatch):
    """The fused forward in its smallest pieces (one group of one sample), whatever the tensor's size."""
    monkeypatch.setattr(shortcuts, "CHUNK_BYTES", 1)


def _inputs(shape, dtype=torch.float32, seed=0):
    """Mixed-sign input with some exact zeros (the ReLU kink), random affine parameters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.3
    x.view(-1)[::7] = 0.0
    c = shape[1]
    w = torch.randn(c, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    go = torch.randn(shape, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, w, b, go)]


def _run(fn, x, w, b, go, groups, add_identity):
    """Output and (dx, dw, db) of ``fn``, for leaves that require grad (None otherwise)."""
    x, w, b = (t.detach().requires_grad_(t.requires_grad) for t in (x, w, b))
    out = fn(x, groups, w, b, EPS, add_identity)
    out.backward(go)
    return out.detach(), [t.grad for t in (x, w, b)]


def _close(a, b, rtol=1e-5, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


SHAPES_AND_GROUPS = [((3, 24, 7, 5), g) for g in (1, 2, 8, 24)] + [
    ((2, 16, 9), g) for g in (1, 2, 8, 16)  # 3-D input
] + [
    ((2, 512, 3, 2), g) for g in (1, 2, 8, 512)  # large-ish C, tiny groups at G = C
]


@pytest.mark.parametrize("add_identity", [False, True])
@pytest.mark.parametrize("shape,groups", SHAPES_AND_GROUPS)
def test_lean_matches_reference(shape, groups, add_identity):
    x, w, b, go = _inputs(shape)
    for t in (x, w, b):
        t.requires_grad_(True)
    ref_out, ref_grads = _run(rg_shortcut_reference, x, w, b, go, groups, add_identity)
    out, grads = _run(rg_shortcut_lean, x, w, b, go, groups, add_identity)
    _close(out, ref_out)
    for got, want in zip(grads, ref_grads):
        _close(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("add_identity", [False, True])
@pytest.mark.parametrize("shape,groups", SHAPES_AND_GROUPS + [((3, 24, 7, 5), 3)])
@pytest.mark.parametrize("in_pieces", [False, True])
def test_fused_equals_reference(shape, groups, add_identity, dtype, in_pieces, monkeypatch):
    """Equal values, with and without a residual, in one piece and in pieces (one group of one sample;
    with budgets that leave a smaller last piece, 24 groups by 5 and 3 groups by 2), and the same
    statistics as ``native_group_norm``: the reference's kernels on the same values."""
    x, w, b, residual = _inputs(shape, dtype)
    for budget in ([1, 5 * 4 * x[0, 0].numel() * x.element_size()] if in_pieces else [2**40]):
        monkeypatch.setattr(shortcuts, "CHUNK_BYTES", budget // (2 if groups == 3 else 1))
        want = rg_shortcut_reference(x, groups, w, b, EPS, add_identity, residual.clone())
        into = residual.clone()
        got = rg_shortcut_fused(x, groups, w, b, EPS, add_identity, into)
        assert got is into and torch.equal(got, want)
        assert torch.equal(rg_shortcut_fused(x, groups, w, b, EPS, add_identity),
                           rg_shortcut_reference(x, groups, w, b, EPS, add_identity))
        n, c = shape[:2]
        _, mean, rstd = rg_shortcut_fused(x, groups, w, b, EPS, add_identity, with_stats=True)
        _, want_mean, want_rstd = torch.ops.aten.native_group_norm(x.relu(), w, b, n, c, x[0, 0].numel(), groups, EPS)
        assert torch.equal(mean, want_mean) and torch.equal(rstd, want_rstd)


def test_group_that_relu_zeroes_entirely():
    """A group with no positive entry has zero variance: rstd = 1/sqrt(eps), gradients 0."""
    x, w, b, go = _inputs((2, 8, 4, 4))
    x[:, :4] = -x[:, :4].abs()  # group 0 of 2 is all non-positive
    for t in (x, w, b):
        t.requires_grad_(True)
    ref_out, ref_grads = _run(rg_shortcut_reference, x, w, b, go, 2, True)
    out, grads = _run(rg_shortcut_lean, x, w, b, go, 2, True)
    _close(out, ref_out)
    for got, want in zip(grads, ref_grads):
        _close(got, want)


@pytest.mark.parametrize("add_identity", [False, True])
@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 3), 2), ((2, 4, 5), 4), ((1, 4, 2, 3), 1)])
def test_gradcheck_float64(shape, groups, add_identity, pieces):
    x, w, b, _ = _inputs(shape, torch.float64)
    x = x + torch.where(x >= 0, 0.1, -0.1)  # keep finite differences off the ReLU kink
    for t in (x, w, b):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w, b: rg_shortcut_lean(x, groups, w, b, EPS, add_identity), (x, w, b))


def test_float64_is_not_downcast():
    """float64 input keeps float64 statistics (float32 is a floor, not a cap)."""
    x, w, b, _ = _inputs((2, 8, 5, 5), torch.float64)
    out = rg_shortcut_lean(x, 4, w, b, EPS, True)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, rg_shortcut_reference(x, 4, w, b, EPS, True), rtol=1e-12, atol=1e-12)


def test_double_backward_raises_instead_of_being_wrong():
    x, w, b, go = _inputs((2, 4, 3, 3))
    for t in (x, w, b, go):
        t.requires_grad_(True)
    out = rg_shortcut_lean(x, 2, w, b, EPS, True)
    gw = torch.autograd.grad(out, w, go, create_graph=True)[0]
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gw.sum().backward()


@pytest.mark.parametrize("dtype,rtol", [(torch.bfloat16, 2**-7), (torch.float16, 2**-10)])
@pytest.mark.parametrize("add_identity", [False, True])
def test_low_precision_uses_float32_statistics(dtype, rtol, add_identity):
    """Half/bf16 input with fp32 GN parameters (as under AMP): the result is the float32
    reference on the same values, rounded once to the input dtype."""
    x, w, b, go = _inputs((3, 24, 7, 5))
    x_lp, go_lp = x.to(dtype), go.to(dtype)
    for t in (x_lp, w, b):
        t.requires_grad_(True)
    out, (dx, dw, db) = _run(rg_shortcut_lean, x_lp, w, b, go_lp, 8, add_identity)
    x32 = x_lp.detach().float().requires_grad_(True)
    ref_out, (rdx, rdw, rdb) = _run(rg_shortcut_reference, x32, w, b, go_lp.float(), 8, add_identity)
    assert out.dtype == dtype and dx.dtype == dtype
    assert dw.dtype == db.dtype == torch.float32
    _close(out.float(), ref_out, rtol=rtol, atol=rtol)
    _close(dx.float(), rdx, rtol=rtol, atol=rtol)
    _close(dw, rdw, rtol=1e-4, atol=1e-4)  # reduced in float32 from identical values
    _close(db, rdb, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frozen", ["affine", "input"])
def test_frozen_leaves(frozen):
    """Frozen GN affine (requires_grad False) or an input that needs no gradient both work."""
    x, w, b, go = _inputs((2, 8, 4, 3))
    if frozen == "affine":
        x.requires_grad_(True)
    else:
        w.requires_grad_(True)
        b.requires_grad_(True)
    ref_out, ref_grads = _run(rg_shortcut_reference, x, w, b, go, 4, True)
    out, grads = _run(rg_shortcut_lean, x, w, b, go, 4, True)
    _close(out, ref_out)
    for got, want in zip(grads, ref_grads):
        assert (got is None) == (want is None)
        if want is not None:
            _close(got, want)


def test_module_with_frozen_parameters():
    m = ReLUGroupNorm(2, 8, impl="lean")
    m.requires_grad_(False)
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = m(x, add_identity=True)
    assert type(out.grad_fn).__name__ == "_LeanRGShortcutBackward"
    out.sum().backward()
    assert m.weight.grad is None and x.grad is not None


# --- which implementation runs -------------------------------------------------------


@pytest.fixture
def calls(monkeypatch):
    """Record which implementation ReLUGroupNorm.forward dispatches to."""
    seen = []
    for name in ("rg_shortcut_lean", "rg_shortcut_reference", "rg_shortcut_fused"):
        real = getattr(shortcuts, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append(_name.rsplit("_", 1)[1])
            return _real(*args, **kwargs)

        monkeypatch.setattr(shortcuts, name, spy)
    return seen


def test_auto_is_reference_on_cpu_while_training(calls):
    ReLUGroupNorm(2, 8, impl="auto")(torch.randn(2, 8, 3, 3, requires_grad=True))
    assert calls == ["reference"]


def test_lean_is_used_when_asked_on_cpu(calls):
    ReLUGroupNorm(2, 8, impl="lean")(torch.randn(2, 8, 3, 3))  # the weight requires grad
    assert calls == ["lean", "fused"]  # the lean function's forward is the fused one


@pytest.mark.parametrize("impl,used", [("auto", "fused"), ("lean", "fused"), ("reference", "reference")])
def test_without_gradients_the_fused_forward_runs(calls, impl, used):
    with torch.no_grad():
        ReLUGroupNorm(2, 8, impl=impl)(torch.randn(2, 8, 3, 3, requires_grad=True))
    m = ReLUGroupNorm(2, 8, impl=impl).requires_grad_(False)
    m(torch.randn(2, 8, 3, 3))  # nothing requires a gradient: inference with grad mode on
    assert calls == [used, used]


def test_the_residual_receives_the_sum_in_place_on_every_path(calls):
    """What the blocks rely on: ``f`` becomes ``f + GN(ReLU(x)) (+ x)``, the tensor they then use."""
    x, w, b, f = _inputs((2, 8, 3, 3))
    for impl in ("reference", "lean"):
        m = ReLUGroupNorm(2, 8, impl=impl)
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                into = f.clone()
                assert m(x, True, into) is into
                torch.testing.assert_close(into, f + m(x, True).detach(), rtol=1e-6, atol=1e-6)
    assert set(calls) == {"reference", "lean", "fused"}


@pytest.mark.parametrize("impl", ["auto", "lean"])
def test_tracing_uses_reference(calls, impl):
    m = ReLUGroupNorm(2, 8, impl=impl)
    torch.jit.trace(m, torch.randn(2, 8, 3, 3, requires_grad=True), check_trace=False)  # the check reruns eagerly
    assert set(calls) == {"reference"}


def test_auto_decision_on_cuda():
    """On CUDA, auto is lean exactly while autograd records, fused otherwise (checked without a GPU)."""
    m = ReLUGroupNorm(2, 8, impl="auto")
    cuda_x = types.SimpleNamespace(is_cuda=True, requires_grad=True)
    assert m._implementation(cuda_x) is shortcuts.rg_shortcut_lean
    with torch.no_grad():
        assert m._implementation(cuda_x) is shortcuts.rg_shortcut_fused
    assert ReLUGroupNorm(2, 8, impl="reference")._implementation(cuda_x) is shortcuts.rg_shortcut_reference
    m.requires_grad_(False)
    assert m._implementation(types.SimpleNamespace(is_cuda=True, requires_grad=False)) is shortcuts.rg_shortcut_fused


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_auto_is_lean_on_cuda(calls):
    m = ReLUGroupNorm(2, 8, impl="auto").cuda()
    x = torch.randn(2, 8, 3, 3, device="cuda", requires_grad=True)
    out = m(x, add_identity=True)
    assert calls == ["lean"]
    ref = shortcuts.rg_shortcut_reference(x, 2, m.weight, m.bias, EPS, True)  # the spy counts it
    _close(out, ref)


# --- whole backbones -----------------------------------------------------------------


def _cfg(variant, impl, norm="BN", depth=26):
    cfg = get_cfg()
    add_rgsnet_config(cfg)
    cfg.MODEL.RGSNET.VARIANT = variant
    cfg.MODEL.RGSNET.SHORTCUT_IMPL = impl
    cfg.MODEL.RGSNET.GN_GROUPS = 0  # auto: 32 * 64 / 256 = 8
    res = cfg.MODEL.RESNETS
    res.DEPTH = depth
    res.NORM = norm
    res.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    res.RES2_OUT_CHANNELS = 64
    # Detectron2's "GN" norm is GroupNorm(32, C): every norm-ed width must be a multiple of 32.
    res.STEM_OUT_CHANNELS = 64 if depth in (18, 34) else 16 if norm == "BN" else 32
    res.WIDTH_PER_GROUP = 64 if depth in (18, 34) else 16 if norm == "BN" else 32
    res.STRIDE_IN_1X1 = depth not in (18, 34)  # basic blocks have no 1x1 conv
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg


def _build(variant, impl, norm="BN", state=None, depth=26):
    torch.manual_seed(0)
    model = build_rgsnet_backbone(_cfg(variant, impl, norm, depth), ShapeSpec(channels=3)).train()
    if state is not None:
        model.load_state_dict(state)
    return model


def _fwd_bwd(model, x, weights):
    out = model(x)
    loss = sum((out[k] * weights[k]).sum() for k in sorted(out))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in out.items()}, grads


def _assert_rel_close(got, want, rel=5e-5):
    assert got.keys() == want.keys()
    for k in want:
        scale = want[k].abs().max().clamp_min(1e-12)
        err = (got[k] - want[k]).abs().max()
        assert err <= rel * scale, f"{k}: max abs diff {err:.3g} vs max magnitude {scale:.3g}"


@pytest.mark.parametrize("norm", ["BN", "GN"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_backbone_lean_matches_reference(variant, norm):
    ref = _build(variant, "reference", norm)
    lean = _build(variant, "lean", norm, state=ref.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    shapes = ref.output_shape()
    weights = {k: torch.randn(2, s.channels, 64 // s.stride, 64 // s.stride, generator=g) for k, s in shapes.items()}
    ref_out, ref_grads = _fwd_bwd(ref, x, weights)
    lean_out, lean_grads = _fwd_bwd(lean, x, weights)
    _assert_rel_close(lean_out, ref_out)
    _assert_rel_close(lean_grads, ref_grads)
    assert len(ref_grads) == len(list(ref.parameters()))  # FREEZE_AT 0: everything trains


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("depth", [18, 26])
@pytest.mark.parametrize("variant", VARIANTS)
def test_backbone_inference_fused_equals_reference(variant, depth, dtype, pieces):
    """Inference (eval, no_grad): the fused forward, in its smallest pieces, against the reference ops."""
    ref = _build(variant, "reference", depth=depth).eval().to(dtype)
    fused = _build(variant, "auto", state=ref.state_dict(), depth=depth).eval().to(dtype)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():
        want, got = ref(x), fused(x)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_traced_lean_backbone_matches_eager():
    model = _build("Res-RGS", "lean").eval()  # eval: BN uses running stats, traced == eager
    x = torch.randn(1, 3, 64, 64)
    eager = model(x)
    traced = torch.jit.trace(model, x, strict=False, check_trace=False)
    graph = str(traced.inlined_graph)
    assert "group_norm" in graph and "PythonOp" not in graph
    # Eager ran the lean function, the trace recorded the reference ops: fp32 rounding only.
    traced_out = {k: v.detach() for k, v in traced(x).items()}
    _assert_rel_close(traced_out, {k: v.detach() for k, v in eager.items()}, rel=1e-5)


# --- memory --------------------------------------------------------------------------


def saved_activation_bytes(model, *inputs):
    """(bytes of the distinct storages autograd keeps for backward, parameters and buffers aside; output)."""
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    kept = []  # alive until counted, so that no storage address is reused meanwhile
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        out = model(*inputs)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}
    return sum(size for ptr, size in storages.items() if ptr not in own), out


def test_lean_shortcut_saves_only_input_and_statistics():
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    m = ReLUGroupNorm(4, 16, impl="lean")
    saved, _ = saved_activation_bytes(m, x)
    assert saved == x.numel() * 4 + 2 * (2 * 4) * 4  # x, and mean + rstd per (sample, group)
    m.impl = "reference"
    saved_ref, _ = saved_activation_bytes(m, x)
    assert saved_ref >= x.numel() * 4  # the ReLU output; x itself is not needed


def test_backbone_saved_bytes():
    x = torch.randn(2, 3, 64, 64)
    saved = {(variant, impl): saved_activation_bytes(_build(variant, impl), x)[0]
             for variant in ("original", "b-RGS", "Res-RGS") for impl in ("reference", "lean")}
    base = saved[("original", "lean")]
    assert saved[("original", "reference")] == base
    for variant in ("b-RGS", "Res-RGS"):
        assert saved[(variant, "lean")] < saved[(variant, "reference")]
        # Measured: both lean variants save ~0.7% less than the original (no ReLU after
        # the sum, so res5's output is not kept; the per-group statistics are tiny).
        assert saved[(variant, "lean")] <= 1.02 * base, saved
    # The reference shortcut keeps one ReLU output per RG shortcut: clearly more.
    assert saved[("b-RGS", "reference")] > 1.05 * base


# --- compiled (the predictor's compile=True) -------------------------------------------


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_compiled_shortcut_equals_reference(dtype, tol):
    """Under torch.compile the fused forward is one piece that inductor fuses: the reference's values."""
    if DYNAMO_LACKING:
        pytest.skip(f"torch.compile needs torch >= {PT2_NEEDS_TORCH[PYTHON]} on Python {PYTHON}")
    x, w, b, residual = _inputs((2, 24, 7, 5), dtype)
    m = ReLUGroupNorm(8, 24).to(dtype)
    with torch.no_grad():
        m.weight.copy_(w)
        m.bias.copy_(b)
        compiled = torch.compile(m, fullgraph=True)  # no graph break inside the shortcut
        for add_identity in (False, True):
            want = rg_shortcut_reference(x, 8, w, b, EPS, add_identity, residual.clone())
            torch.testing.assert_close(compiled(x, add_identity, residual.clone()), want, rtol=tol, atol=tol)


def test_compiled_predictor_equals_eager(tmp_path):
    """``RGSPredictor(cfg, compile=True)`` (the demo's --compile): a Res-RGS detector's detections as eager's."""
    from rgs_detectron.engine.predictor import RGSPredictor

    from common import save_random_detector

    if DYNAMO_LACKING:
        pytest.skip(f"torch.compile needs torch >= {PT2_NEEDS_TORCH[PYTHON]} on Python {PYTHON} (refusal tested)")
    cfg = save_random_detector(tmp_path, "Res-RGS", "FPN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)[2]
    image = torch.randint(0, 256, (96, 128, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy()
    want, got = (RGSPredictor(cfg, compile=compile)(image)["instances"] for compile in (False, True))
    assert len(want) > 0 and len(got) == len(want)
    torch.testing.assert_close(got.pred_boxes.tensor, want.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-4, atol=1e-5)


def test_compile_is_refused_in_one_line_where_torch_lacks_it(tmp_path, monkeypatch, capsys):
    """torch 2.3 on Python 3.12 (the matrix's floor) for real; elsewhere this Python's torch is pretended too old.
    The demo's --compile says what it needs in one line (it was a Dynamo traceback on the floor)."""
    from PIL import Image

    from rgs_detectron.cli import demo

    from common import save_random_detector

    if not DYNAMO_LACKING:
        monkeypatch.setitem(PT2_NEEDS_TORCH, PYTHON, "99.0")
    config, weights = save_random_detector(tmp_path, "Res-RGS", "FPN")[:2]
    image = tmp_path / "in.png"
    Image.new("RGB", (80, 64)).save(image)
    argv = [
        "--config-file", config, "--weights", weights, "--input",
        str(image), "--output",
        str(tmp_path / "out"), "--compile"
    ]
    assert demo.main(argv) == 2
    err = capsys.readouterr().err
    assert f"compile (the demo's --compile) needs torch >= {PT2_NEEDS_TORCH[PYTHON]} on Python {PYTHON} " \
        f"(torch.compile); this is torch {torch.__version__}" in err and len(err.strip().splitlines()) == 1
