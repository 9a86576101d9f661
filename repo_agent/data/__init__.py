"""Training data from traces: step-level SFT examples (sft.py), step-level preference pairs (pairs.py),
export shapes for Together and TRL (export.py), file validation (check.py) and run statistics (stats.py).

Public entry points other modules import: `check_file` / `CheckReport` (validate a JSONL file),
`extract_sft`, `extract_pairs`.
"""

from .check import CheckReport, check_file

__all__ = ["CheckReport", "check_file"]
