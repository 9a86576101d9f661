import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.leap_year import leap_year
else:
    from python_programs.leap_year import leap_year

testdata = load_json_testcases(leap_year.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_leap_year(input_data, expected):
    assert leap_year(*input_data) == expected
