#!/usr/bin/env bash
# Installs rgs_detectron and what it needs: into the project's .venv, or into your own environment.
#
#   bash tools/setup_env.sh                        # the project's .venv: the exact tested versions and the test tools (CI)
#   bash tools/setup_env.sh --no-venv              # your environment ($PYTHON, default the active one's python3)
#   bash tools/setup_env.sh --no-venv --with-tests # ... and pytest, pytest-xdist, onnx, onnxruntime, faster-coco-eval
#   bash tools/setup_env.sh --detectron2 official  # Detectron2 built from its source (bundled: the checked wheel; keep)
#   bash tools/setup_env.sh --torch-index-url https://download.pytorch.org/whl/cu126 --torch 2.9.1 --torchvision 0.24.1
#   VENV=/path/to/venv PYTHON=python3.12 bash tools/setup_env.sh   # Python 3.11, 3.12 or 3.13
#
# Into your environment (--no-venv) it installs only what rgs_detectron needs at run time, as
# setup.py's ranges: a package that is installed and inside its range is kept, never
# downgraded; a missing one gets its tested version. It keeps a working torch (>= 2.3; the plan
# names what rgs_detectron cannot do with it) and an importable Detectron2 (--detectron2 default:
# keep when one imports, else bundled). Every refusal comes before the first install; the plan
# (keep / install / replace) comes before it too, and its constraints go with every install step.
# Other options: --pinned (the exact tested versions there too), --keep-torch (never install
# torch), --datasets/--no-datasets (Debian's dataset-fashion-mnist; default: on in .venv),
# --dry-run (print the plan, install nothing). Every step says what it does; a failing step
# names itself and why, and the script stops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
DETECTRON2=""          # keep | bundled | official; "" = keep when one imports, else bundled
USE_VENV=1
PINNED=0
WITH_TESTS=0
KEEP_TORCH=0
TORCH_INDEX_URL=""
DEFAULT_TORCH="2.14.1"
DEFAULT_TORCHVISION="0.29.1"
TORCH_VERSION="$DEFAULT_TORCH"
TORCHVISION_VERSION="$DEFAULT_TORCHVISION"
MIN_TORCH="2.3"
DATASETS=""            # 1 | 0; "" = on in .venv, off in your environment
DRY_RUN=0
D2_WHEEL="sal_detectron2-0.7.2-cp310-none-any.whl"
D2_WHEEL_SHA256="491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
# Official main branch at the commit the wheel's code was taken from.
D2_OFFICIAL="git+https://github.com/facebookresearch/detectron2.git@a59f0563"
REQ="$ROOT/requirements"

usage() { sed -n 2,20p "$0"; }
value() {  # value OPTION VALUE EXAMPLE: VALUE, or a one-line refusal naming OPTION
  if [ -z "$2" ] || [ "${2#-}" != "$2" ]; then echo "setup_env: $1 needs a value (e.g. $1 $3)" >&2; exit 2; fi
  printf '%s' "$2"
}
GIVEN=" "  # the torch options on the command line, to refuse contradictions
while [ $# -gt 0 ]; do
  case "$1" in
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    --detectron2) DETECTRON2="$(value "$1" "${2-}" official)"; shift 2 ;;
    --keep-torch) KEEP_TORCH=1; GIVEN+="--keep-torch "; shift ;;
    --torch-index-url) TORCH_INDEX_URL="$(value "$1" "${2-}" https://download.pytorch.org/whl/cpu)"; GIVEN+="--torch-index-url "; shift 2 ;;
    --torch) TORCH_VERSION="$(value "$1" "${2-}" 2.9.1)"; GIVEN+="--torch "; shift 2 ;;
    --torchvision) TORCHVISION_VERSION="$(value "$1" "${2-}" 0.24.1)"; GIVEN+="--torchvision "; shift 2 ;;
    --no-venv) USE_VENV=0; shift ;;
    --pinned) PINNED=1; shift ;;
    --with-tests) WITH_TESTS=1; shift ;;
    --datasets) DATASETS=1; shift ;;
    --no-datasets) DATASETS=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup_env: unknown option '$1' (see bash tools/setup_env.sh --help)" >&2; exit 2 ;;
  esac
done
case "$DETECTRON2" in
  ""|keep|bundled|official) ;;
  wheel) DETECTRON2=bundled ;;  # the name this option's value had before
  *) echo "setup_env: --detectron2 must be keep, bundled or official, got '$DETECTRON2'" >&2; exit 2 ;;
esac
for other in --torch --torchvision --torch-index-url; do
  if [[ "$GIVEN" == *" --keep-torch "* && "$GIVEN" == *" $other "* ]]; then
    echo "setup_env: --keep-torch and $other exclude each other (--keep-torch keeps the environment's torch); drop one" >&2
    exit 2
  fi
done
if [ "$USE_VENV" = 1 ]; then PINNED=1; WITH_TESTS=1; fi  # the project's own environment is the tested one
[ -n "$DATASETS" ] || DATASETS="$USE_VENV"

STEP=""
TMP="$(mktemp -d)"
trap 'rc=$?; rm -rf "$TMP"; [ $rc -ne 0 ] && echo "setup_env: FAILED at step: $STEP (exit $rc); see the messages above" >&2' EXIT
step() { STEP="$1"; echo "==> $1"; }
run() { if [ "$DRY_RUN" = 1 ]; then echo "    would run: $*"; else "$@"; fi; }

step "check Python ($PYTHON; supported and tested: 3.11, 3.12, 3.13)"
"$PYTHON" - <<'PY'
import sys
v = "%d.%d" % sys.version_info[:2]  # no f-string: the message must reach users of old Pythons too
if v not in ("3.11", "3.12", "3.13"):
    sys.exit("Python %s found; rgs_detectron supports Python 3.11-3.13 (numpy 2.4, pillow 13 and scikit-learn 1.9 "
             "need >= 3.11). Set PYTHON=python3.11, python3.12 or python3.13." % v)
print("    Python %s: tested; CI runs the whole suite on it %s" % (v, {"3.11": "in the lock's .venv",
      "3.12": "with the oldest supported torch, 2.3.1", "3.13": "with the lock's torch, set up with --no-venv"}[v]))
PY

if [ "$USE_VENV" = 1 ]; then
  step "create the virtual environment at $VENV (exact tested versions and the test tools)"
  if [ ! -x "$VENV/bin/python" ]; then run "$PYTHON" -m venv "$VENV"; fi
  PY="$VENV/bin/python"
else
  PY="$(command -v "$PYTHON")"
  step "install into the environment of $PY (--no-venv; $([ "$PINNED" = 1 ] && echo "exact tested versions, --pinned" || echo "what is installed and inside setup.py's ranges is kept"))"
  if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "setup_env: $PY has no pip; add it with '$PY -m ensurepip' and run again" >&2; exit 1
  fi
fi
PIP=("$PY" -m pip --disable-pip-version-check)

# What the environment has: torch, Detectron2, cv2 (shell assignments; nothing when $PY is not made yet).
TORCH=absent D2=absent CV2=0 TORCH_FOUND="" TORCH_LACKS="" D2_DIST="" D2_VERSION="" D2_WHERE="" D2_STALE=0 D2_ERROR=""
if [ -x "$PY" ]; then
  if ! FOUND="$("$PY" "$ROOT/tools/env_plan.py" probe --min-torch "$MIN_TORCH" 2>"$TMP/probe.log")"; then
    echo "setup_env: could not inspect the packages of $PY's environment: $(tail -n 1 "$TMP/probe.log")" >&2; exit 1
  fi
  eval "$FOUND"
fi

# Every decision and every refusal comes before the first step that installs anything.
# What to do with torch: keep | install (the tested build, or the one named by --torch/--torch-index-url).
TORCH_LOCK=()  # the tested torch's own dependencies, used only when that build is installed
if [ "$KEEP_TORCH" = 1 ] || { [ "$USE_VENV" = 0 ] && [ "$TORCH" = fits ] && [ "$GIVEN" = " " ]; }; then
  if [ "$TORCH" != fits ]; then
    step "keep the environment's torch and torchvision (need torch >= $MIN_TORCH with a matching torchvision)"
    echo "setup_env: --keep-torch, but no working torch >= $MIN_TORCH with a matching torchvision is importable from $PY" \
         "(${TORCH_FOUND:-none found}); install one (https://pytorch.org/get-started/locally/) or drop --keep-torch" >&2
    exit 1
  fi
  TORCH_ACTION=keep
elif [ "$USE_VENV" = 0 ] && [ "$TORCH" != absent ] && [ "$GIVEN" = " " ]; then
  step "check the environment's torch (need torch >= $MIN_TORCH with a matching torchvision)"
  echo "setup_env: $PY has $TORCH_FOUND, which rgs_detectron cannot use (need torch >= $MIN_TORCH with a matching" \
       "torchvision); upgrade your build, or replace it with --torch VERSION --torchvision VERSION [--torch-index-url URL]" >&2
  exit 1
else
  TORCH_ACTION=install
  if [ -z "$TORCH_INDEX_URL" ] && [ "$TORCH_VERSION" = "$DEFAULT_TORCH" ] && [ "$TORCHVISION_VERSION" = "$DEFAULT_TORCHVISION" ]; then
    TORCH_LOCK=("$REQ/torch.txt" "$REQ/torch-constraints.txt")
  fi
fi

# Which Detectron2: the one the environment has, unless asked otherwise.
if [ -z "$DETECTRON2" ]; then
  case "$D2" in
    absent) DETECTRON2=bundled ;;
    imports|needs-torch) DETECTRON2=keep ;;
    *) step "check the environment's Detectron2"
       echo "setup_env: $PY has a Detectron2 ($D2_DIST, $D2_WHERE) that does not import ($D2_ERROR); fix it," \
            "or replace it with --detectron2 bundled or --detectron2 official" >&2; exit 1 ;;
  esac
  if [ "$DETECTRON2" = keep ] && [ "$D2_STALE" = 1 ]; then
    DETECTRON2=bundled  # the same wheel, installed before its metadata was rewritten: refreshing it loses nothing
    echo "==> the installed $D2_DIST is the bundled wheel with its old metadata (numpy<2, black): installing it again, rewritten"
  fi
fi
if [ "$DETECTRON2" = keep ] && { [ "$D2" = absent ] || [ "$D2" = broken ]; }; then
  step "keep the environment's Detectron2"
  echo "setup_env: --detectron2 keep, but no Detectron2 imports from $PY${D2_ERROR:+ ($D2_ERROR)};" \
       "use --detectron2 bundled or --detectron2 official" >&2; exit 1
fi
if [ "$DETECTRON2" = bundled ] && [ "$D2" != absent ] && [ "$D2_DIST" = "a source tree" ]; then
  step "remove the environment's Detectron2 (at $D2_WHERE), replaced as asked (--detectron2 bundled)"
  echo "setup_env: the Detectron2 at $D2_WHERE belongs to no installed distribution pip can remove; remove" \
       "it yourself (pip uninstall, PYTHONPATH, a .pth file) or use --detectron2 keep" >&2; exit 1
fi

# The plan: what each package becomes. Its constraints go with every install step below, torch's too,
# so that what is installed is what the plan says (numpy included, which torchvision pulls in).
EXTRAS=""  # the extras of setup.py a range install asks for
[ "$WITH_TESTS" = 1 ] && EXTRAS+=",test"
if [ "$CV2" = 0 ]; then EXTRAS+=",opencv"; fi  # an installed cv2 (opencv-python, conda's) is never doubled
EXTRAS="${EXTRAS#,}"
if [ "$TORCH_ACTION" = keep ]; then
  step "keep the environment's torch and torchvision (need torch >= $MIN_TORCH with a matching torchvision)"
  echo "    found $TORCH_FOUND: kept"
  if [ -n "$TORCH_LACKS" ]; then echo "    what rgs_detectron cannot do with it: $TORCH_LACKS"; fi
fi
if [ "$PINNED" = 1 ]; then
  step "plan the exact tested versions (requirements/base.txt$([ "$WITH_TESTS" = 1 ] && echo ", test.txt"); constraints.txt)"
  INSTALLS=("$REQ/base.txt"); [ "$WITH_TESTS" = 1 ] && INSTALLS+=("$REQ/test.txt")
  PLAN_PY=("$PY"); [ -x "$PY" ] || PLAN_PY=("$PYTHON" -S)  # a .venv not made yet (dry run): no packages, like -S
  "${PLAN_PY[@]}" "$ROOT/tools/env_plan.py" pinned "$TMP/pinned.txt" --install "${INSTALLS[@]}"
  CONSTRAINTS=(-c "$REQ/constraints.txt"); [ ${#TORCH_LOCK[@]} -gt 0 ] && CONSTRAINTS+=(-c "$REQ/torch-constraints.txt")
else
  step "plan Detectron2's runtime dependencies and ours (setup.py's ranges${EXTRAS:+, extras $EXTRAS})"
  EXTRA_ARGS=(); for e in ${EXTRAS//,/ }; do EXTRA_ARGS+=(--extra "$e"); done
  [ ${#TORCH_LOCK[@]} -gt 0 ] && EXTRA_ARGS+=(--extra torch)
  "$PY" "$ROOT/tools/env_plan.py" plan "$ROOT/setup.py" "$TMP/constraints.txt" \
    "$REQ/base.txt" "$REQ/test.txt" "$REQ/constraints.txt" "${TORCH_LOCK[@]}" "${EXTRA_ARGS[@]}"
  CONSTRAINTS=(-c "$TMP/constraints.txt")
fi

# The dependencies first, so that torch's install finds numpy and pillow already at the planned versions.
if [ "$PINNED" = 1 ]; then
  step "install Detectron2's runtime dependencies and ours, the exact tested versions (as planned)"
  run "${PIP[@]}" install -r "$TMP/pinned.txt" "${CONSTRAINTS[@]}"
else
  step "install rgs_detectron itself (editable) with what it lacks (as planned; kept packages are not touched)"
  run "${PIP[@]}" install -e "$ROOT${EXTRAS:+[$EXTRAS]}" "${CONSTRAINTS[@]}"
fi

if [ "$TORCH_ACTION" = install ]; then
  if [ -n "$TORCH_INDEX_URL" ]; then
    step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION from $TORCH_INDEX_URL"
    run "${PIP[@]}" install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "${CONSTRAINTS[@]}"
  elif [ ${#TORCH_LOCK[@]} -eq 0 ]; then
    step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION from PyPI"
    run "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "${CONSTRAINTS[@]}"
  else
    step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (PyPI's CUDA 13.0 build: GPUs need NVIDIA driver >= 580)"
    run "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "${CONSTRAINTS[@]}"
  fi
fi

case "$DETECTRON2" in
  keep)
    step "keep the environment's Detectron2"
    echo "    found ${D2_VERSION:+Detectron2 $D2_VERSION }($D2_DIST) at $D2_WHERE: kept" ;;
  bundled)
    if [ "$D2" != absent ] && [ "$D2_DIST" != sal-detectron2 ]; then
      step "remove the environment's Detectron2 ($D2_DIST at $D2_WHERE), replaced as asked (--detectron2 bundled)"
      run "${PIP[@]}" uninstall -y "$D2_DIST"
    fi
    step "download $D2_WHEEL (sal-detectron2==0.7.2) and check its sha256"
    run "${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.10 -d "$TMP" "sal-detectron2==0.7.2"
    if [ "$DRY_RUN" = 0 ]; then
      actual="$(sha256sum "$TMP/$D2_WHEEL" | cut -d' ' -f1)"
      if [ "$actual" != "$D2_WHEEL_SHA256" ]; then
        echo "setup_env: sha256 of $D2_WHEEL is $actual, expected $D2_WHEEL_SHA256; refusing to install it" >&2
        exit 1
      fi
    fi
    step "rewrite the wheel's tag and requirements (py3-none-any; numpy without its <2 cap; no black, needed only by LazyConfig.to_py)"
    run "$PY" "$ROOT/tools/retag_wheel.py" "$TMP/$D2_WHEEL" "$TMP/retagged" --drop black --unpin numpy
    step "install Detectron2 from the rewritten wheel (--no-deps: its dependencies are rgs_detectron's)"
    run "${PIP[@]}" install --no-deps --force-reinstall "$TMP/retagged/sal_detectron2-0.7.2-py3-none-any.whl" ;;
  official)
    if [ "$D2_DIST" = sal-detectron2 ]; then
      step "remove the bundled Detectron2 wheel (sal-detectron2), replaced as asked (--detectron2 official)"
      run "${PIP[@]}" uninstall -y sal-detectron2
    fi
    step "build Detectron2 from the official source ($D2_OFFICIAL; needs git, a compiler and internet access)"
    run "${PIP[@]}" install --no-build-isolation "$D2_OFFICIAL" "${CONSTRAINTS[@]}" ;;
esac

if [ "$PINNED" = 1 ]; then
  step "install rgs_detectron itself (editable; its dependencies are installed above)"
  run "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
fi

if [ "$DATASETS" = 1 ]; then
  step "Fashion-MNIST for pretraining, from Debian's dataset-fashion-mnist (optional; --no-datasets skips it)"
  if [ -d /usr/share/datasets/fashion-mnist ]; then
    echo "    already installed (/usr/share/datasets/fashion-mnist)"
  elif command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    run $SUDO apt-get install -y -q dataset-fashion-mnist \
      || { run $SUDO apt-get update -q && run $SUDO apt-get install -y -q dataset-fashion-mnist; } \
      || echo "    could not install it; train_classifier --download fetches Fashion-MNIST instead"
  else
    echo "    no apt-get (or no root): skipped; train_classifier --download fetches Fashion-MNIST instead"
  fi
fi

step "check that Detectron2 and rgs_detectron import"
run "$PY" -c "import detectron2, torch, rgs_detectron; print('detectron2', detectron2.__version__, '| torch', torch.__version__, '| CUDA usable:', torch.cuda.is_available(), '| rgs_detectron', rgs_detectron.__version__)"
step "check that the installed packages' requirements agree (pip check)"
if [ "$USE_VENV" = 1 ]; then
  run "${PIP[@]}" check
else
  run "${PIP[@]}" check || echo "    pip check reports the problems above in $PY's environment; rgs_detectron is installed"
fi
if [ "$DRY_RUN" = 0 ] && [ "$USE_VENV" = 1 ]; then touch "$VENV/.rgs_setup_done"; fi
STEP="done"
if [ "$DRY_RUN" = 1 ]; then echo "==> dry run complete: nothing was installed"; else echo "==> set-up complete"; fi
if [ "$USE_VENV" = 1 ]; then echo "    activate with 'source $VENV/bin/activate'"; fi
exit 0
