"""Suites of buggy programs: task records, builders for QuixBugs/BugsInPy layouts, split, validation."""
