import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.caesar_shift import caesar_shift
else:
    from python_programs.caesar_shift import caesar_shift

testdata = load_json_testcases(caesar_shift.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_caesar_shift(input_data, expected):
    assert caesar_shift(*input_data) == expected
