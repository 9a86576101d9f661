import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.second_largest import second_largest
else:
    from python_programs.second_largest import second_largest

testdata = load_json_testcases(second_largest.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_second_largest(input_data, expected):
    assert second_largest(*input_data) == expected
