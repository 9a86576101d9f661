import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.digit_sum import digit_sum
else:
    from python_programs.digit_sum import digit_sum

testdata = load_json_testcases(digit_sum.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_digit_sum(input_data, expected):
    assert digit_sum(*input_data) == expected
