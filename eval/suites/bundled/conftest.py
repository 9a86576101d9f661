"""Shared pytest options for the bundled suite (QuixBugs layout).

--correct imports the reference programs from correct_python_programs/ instead of python_programs/.
Agent workspaces never contain correct_python_programs/, so there the option is never used.
"""

import pytest


def pytest_addoption(parser):
    parser.addoption("--correct", action="store_true", help="test the reference programs")


def pytest_configure(config):
    pytest.use_correct = config.getoption("--correct")
