"""Code that runs inside the test process (any Python >= 3.6, no repo_agent import): the bootstrap
that sets limits before pytest starts, and the pytest plugin that streams authenticated results."""
