"""Evaluation: metrics from traces (metrics.py), run reports (report.py), paired comparisons (compare.py), plots (plots.py)."""
