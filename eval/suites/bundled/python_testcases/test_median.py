import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.median import median
else:
    from python_programs.median import median

testdata = load_json_testcases(median.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_median(input_data, expected):
    assert median(*input_data) == expected
