#!/usr/bin/env bash
# Creates .venv and installs pinned, tested versions of everything rgs_detectron needs.
#
#   bash tools/setup_env.sh                       # Detectron2 from the sal-detectron2 0.7.2 wheel (default)
#   bash tools/setup_env.sh --detectron2 official # Detectron2 built from the official git source instead
#   VENV=/path/to/venv PYTHON=python3.11 bash tools/setup_env.sh
#
# Every step says what it does; a failing step names itself and why, and the script stops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
DETECTRON2_SOURCE="wheel"

TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
D2_WHEEL="sal_detectron2-0.7.2-cp310-none-any.whl"
D2_WHEEL_SHA256="491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
# Official main branch at the commit the wheel's code was taken from.
D2_OFFICIAL="git+https://github.com/facebookresearch/detectron2.git@a59f0563"

while [ $# -gt 0 ]; do
  case "$1" in
    --detectron2) DETECTRON2_SOURCE="${2:-}"; shift 2 ;;
    --detectron2=*) DETECTRON2_SOURCE="${1#*=}"; shift ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "setup_env: unknown option '$1' (known: --detectron2 wheel|official)" >&2; exit 2 ;;
  esac
done
case "$DETECTRON2_SOURCE" in wheel|official) ;; *)
  echo "setup_env: --detectron2 must be 'wheel' or 'official', got '$DETECTRON2_SOURCE'" >&2; exit 2 ;;
esac

STEP=""
trap 'rc=$?; [ $rc -ne 0 ] && echo "setup_env: FAILED at step: $STEP (exit $rc); see the messages above" >&2' EXIT
step() { STEP="$1"; echo "==> $1"; }

step "check Python (need 3.10 to 3.12)"
"$PYTHON" - <<'PY'
import sys
v = sys.version_info[:2]
if not ((3, 10) <= v <= (3, 12)):
    sys.exit(f"Python {v[0]}.{v[1]} found; this project is tested on 3.11 (3.10 to 3.12 supported). Set PYTHON=python3.11.")
PY

step "create the virtual environment at $VENV"
if [ ! -x "$VENV/bin/python" ]; then "$PYTHON" -m venv "$VENV"; fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "install torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

step "install Detectron2's runtime dependencies and ours (requirements/base.txt, requirements/test.txt)"
"${PIP[@]}" install -r "$ROOT/requirements/base.txt" -r "$ROOT/requirements/test.txt"

if [ "$DETECTRON2_SOURCE" = "wheel" ]; then
  step "download $D2_WHEEL (sal-detectron2==0.7.2) and check its sha256"
  TMP="$(mktemp -d)"
  "${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.10 -d "$TMP" "sal-detectron2==0.7.2"
  actual="$(sha256sum "$TMP/$D2_WHEEL" | cut -d' ' -f1)"
  if [ "$actual" != "$D2_WHEEL_SHA256" ]; then
    echo "setup_env: sha256 of $D2_WHEEL is $actual, expected $D2_WHEEL_SHA256; refusing to install it" >&2
    exit 1
  fi
  step "install Detectron2 from the checked wheel (retagged py3-none-any, --no-deps: its metadata pins numpy<2 and black)"
  cp "$TMP/$D2_WHEEL" "$TMP/sal_detectron2-0.7.2-py3-none-any.whl"
  "${PIP[@]}" install --no-deps --force-reinstall "$TMP/sal_detectron2-0.7.2-py3-none-any.whl"
  rm -rf "$TMP"
else
  step "build Detectron2 from the official source ($D2_OFFICIAL; needs git, a compiler and internet access)"
  "${PIP[@]}" install --no-build-isolation "$D2_OFFICIAL"
fi

step "install rgs_detectron itself (editable)"
"${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"

step "check that Detectron2 and rgs_detectron import"
"$VENV/bin/python" -c "import detectron2, torch, rgs_detectron; print('detectron2', detectron2.__version__, '| torch', torch.__version__, '| rgs_detectron', rgs_detectron.__version__)"
touch "$VENV/.rgs_setup_done"
STEP="done"
echo "==> set-up complete: activate with 'source $VENV/bin/activate'"
