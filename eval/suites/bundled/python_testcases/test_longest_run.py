import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.longest_run import longest_run
else:
    from python_programs.longest_run import longest_run

testdata = load_json_testcases(longest_run.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_longest_run(input_data, expected):
    assert longest_run(*input_data) == expected
