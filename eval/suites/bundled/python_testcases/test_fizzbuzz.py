import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.fizzbuzz import fizzbuzz
else:
    from python_programs.fizzbuzz import fizzbuzz

testdata = load_json_testcases(fizzbuzz.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_fizzbuzz(input_data, expected):
    assert fizzbuzz(*input_data) == expected
