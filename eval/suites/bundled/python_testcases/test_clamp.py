import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.clamp import clamp
else:
    from python_programs.clamp import clamp

testdata = load_json_testcases(clamp.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_clamp(input_data, expected):
    assert clamp(*input_data) == expected
