#!/usr/bin/env bash
# Set up .venv (idempotent) and run the main job: the whole pipeline (SFT, then DPO) on the embedded SmolLM2, offline.
# Extra arguments go to `repo-agent pipeline` (see `.venv/bin/repo-agent pipeline --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/repo-agent pipeline --dpo "$@"
