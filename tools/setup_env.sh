#!/usr/bin/env bash
# Installs rgs_detectron and pinned, tested versions of everything it needs.
#
#   bash tools/setup_env.sh                        # a new .venv, PyPI's torch (CUDA 13.0 build), Detectron2 wheel
#   bash tools/setup_env.sh --keep-torch           # keep the torch/torchvision the environment already has
#   bash tools/setup_env.sh --torch-index-url https://download.pytorch.org/whl/cu126 --torch 2.9.1 --torchvision 0.24.1
#   bash tools/setup_env.sh --no-venv --keep-torch # into the environment of $PYTHON (your conda env or venv)
#   bash tools/setup_env.sh --detectron2 official  # Detectron2 built from its git source instead of the wheel
#   VENV=/path/to/venv PYTHON=python3.12 bash tools/setup_env.sh   # Python 3.11 (tested), 3.12, 3.13
#
# Other options: --no-datasets (skip Debian's dataset-fashion-mnist), --dry-run (print the
# commands instead of running them). Every step says what it does; a failing step names
# itself and why, and the script stops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
DETECTRON2_SOURCE="wheel"
USE_VENV=1
KEEP_TORCH=0
TORCH_INDEX_URL=""
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
MIN_TORCH="2.3"
DATASETS=1
DRY_RUN=0
D2_WHEEL="sal_detectron2-0.7.2-cp310-none-any.whl"
D2_WHEEL_SHA256="491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
# Official main branch at the commit the wheel's code was taken from.
D2_OFFICIAL="git+https://github.com/facebookresearch/detectron2.git@a59f0563"

usage() { sed -n 2,14p "$0"; }
value() {  # value OPTION VALUE EXAMPLE: VALUE, or a one-line refusal naming OPTION
  if [ -z "$2" ] || [ "${2#-}" != "$2" ]; then echo "setup_env: $1 needs a value (e.g. $1 $3)" >&2; exit 2; fi
  printf '%s' "$2"
}
GIVEN=" "  # the torch options on the command line, to refuse contradictions
while [ $# -gt 0 ]; do
  case "$1" in
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    --detectron2) DETECTRON2_SOURCE="$(value "$1" "${2-}" official)"; shift 2 ;;
    --keep-torch) KEEP_TORCH=1; GIVEN+="--keep-torch "; shift ;;
    --torch-index-url) TORCH_INDEX_URL="$(value "$1" "${2-}" https://download.pytorch.org/whl/cpu)"; GIVEN+="--torch-index-url "; shift 2 ;;
    --torch) TORCH_VERSION="$(value "$1" "${2-}" 2.9.1)"; GIVEN+="--torch "; shift 2 ;;
    --torchvision) TORCHVISION_VERSION="$(value "$1" "${2-}" 0.24.1)"; GIVEN+="--torchvision "; shift 2 ;;
    --no-venv) USE_VENV=0; shift ;;
    --no-datasets) DATASETS=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup_env: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$DETECTRON2_SOURCE" in wheel|official) ;; *)
  echo "setup_env: --detectron2 must be 'wheel' or 'official', got '$DETECTRON2_SOURCE'" >&2; exit 2 ;;
esac
for other in --torch --torchvision --torch-index-url; do
  if [[ "$GIVEN" == *" --keep-torch "* && "$GIVEN" == *" $other "* ]]; then
    echo "setup_env: --keep-torch and $other exclude each other (--keep-torch keeps the environment's torch); drop one" >&2
    exit 2
  fi
done

STEP=""
trap 'rc=$?; [ $rc -ne 0 ] && echo "setup_env: FAILED at step: $STEP (exit $rc); see the messages above" >&2' EXIT
step() { STEP="$1"; echo "==> $1"; }
run() { if [ "$DRY_RUN" = 1 ]; then echo "    would run: $*"; else "$@"; fi; }

step "check Python ($PYTHON; supported: 3.11, 3.12, 3.13; tested: 3.11)"
"$PYTHON" - <<'PY'
import sys
v = "%d.%d" % sys.version_info[:2]  # no f-string: the message must reach users of old Pythons too
if v not in ("3.11", "3.12", "3.13"):
    sys.exit("Python %s found; rgs_detectron supports Python 3.11-3.13 (numpy 2.4, pillow 13 and scikit-learn 1.9 "
             "need >= 3.11). Set PYTHON=python3.11 (the tested one), python3.12 or python3.13." % v)
print("    Python %s: %s" % (v, "tested (CI)" if v == "3.11" else "supported; the lock resolves for it, the suite runs on 3.11"))
PY

if [ "$USE_VENV" = 1 ]; then
  step "create the virtual environment at $VENV"
  if [ ! -x "$VENV/bin/python" ]; then run "$PYTHON" -m venv "$VENV"; fi
  PY="$VENV/bin/python"
else
  step "install into the environment of $PYTHON (--no-venv)"
  PY="$(command -v "$PYTHON")"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

torch_fits() {  # torch and torchvision importable, working together, and new enough
  [ -x "$PY" ] || return 1
  "$PY" - "$MIN_TORCH" <<'PY' 2>/dev/null
import sys
import torch, torchvision
from packaging.version import Version
torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # fails when the two builds do not match
have = Version(torch.__version__.split("+")[0])
print(f"    found torch {torch.__version__}, torchvision {torchvision.__version__}")
sys.exit(0 if have >= Version(sys.argv[1]) else 1)
PY
}

if [ "$KEEP_TORCH" = 1 ]; then
  step "keep the environment's torch and torchvision (--keep-torch; need torch >= $MIN_TORCH with a matching torchvision)"
  if ! torch_fits; then
    echo "setup_env: --keep-torch, but no working torch >= $MIN_TORCH with a matching torchvision is importable from $PY;" \
         "install one (https://pytorch.org/get-started/locally/) or drop --keep-torch" >&2
    exit 1
  fi
elif [ -n "$TORCH_INDEX_URL" ]; then
  step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION from $TORCH_INDEX_URL"
  run "${PIP[@]}" install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
else
  step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (PyPI's CUDA 13.0 build: GPUs need NVIDIA driver >= 580)"
  run "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" -c "$ROOT/requirements/torch-constraints.txt"
fi

step "install Detectron2's runtime dependencies and ours (requirements/base.txt, test.txt; locked by constraints.txt)"
run "${PIP[@]}" install -r "$ROOT/requirements/base.txt" -r "$ROOT/requirements/test.txt" -c "$ROOT/requirements/constraints.txt"

if [ "$DETECTRON2_SOURCE" = "wheel" ]; then
  step "download $D2_WHEEL (sal-detectron2==0.7.2) and check its sha256"
  TMP="$(mktemp -d)"
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
  step "install Detectron2 from the rewritten wheel (--no-deps: its dependencies come from the step above)"
  run "${PIP[@]}" install --no-deps --force-reinstall "$TMP/retagged/sal_detectron2-0.7.2-py3-none-any.whl"
  rm -rf "$TMP"
else
  step "build Detectron2 from the official source ($D2_OFFICIAL; needs git, a compiler and internet access)"
  run "${PIP[@]}" install --no-build-isolation "$D2_OFFICIAL"
fi

step "install rgs_detectron itself (editable)"
run "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"

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
if [ "$DRY_RUN" = 0 ] && [ "$USE_VENV" = 1 ]; then touch "$VENV/.rgs_setup_done"; fi
STEP="done"
if [ "$DRY_RUN" = 1 ]; then echo "==> dry run complete: nothing was installed"; else echo "==> set-up complete"; fi
if [ "$USE_VENV" = 1 ]; then echo "    activate with 'source $VENV/bin/activate'"; fi
exit 0
