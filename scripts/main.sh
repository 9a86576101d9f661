#!/usr/bin/env bash
# Set up .venv (idempotent) and run the main job on the embedded SmolLM2-135M, offline, on CPU:
# synthesize training tasks from the train side of the bundled suite and HumanEval, and a held-out set from
# their test side; the oracle teacher fixes 64 of the training tasks with the `edit` tool set; episode-row
# LoRA SFT; greedy evaluation of the base model and the student on the held-out set and on the bundled
# test side; comparisons whose intervals resample source programs. About 20 minutes on 2 cores, run alone.
# Extra arguments go to `repo-agent pipeline` (see `.venv/bin/repo-agent pipeline --help`), e.g. --train-tasks 256.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/repo-agent pipeline \
  --synth-from eval/suites/bundled_suite.json --synth-from humaneval \
  --synth-per-program 2 --synth-heldout-per-program 1 --train-tasks 64 \
  --also-test eval/suites/bundled_test_suite.json \
  --toolset edit --test-policy on_write --rollouts 1 --no-branch-pairs \
  --eval-max-iters 5 --num-workers 8 \
  "$@"
