import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.to_binary import to_binary
else:
    from python_programs.to_binary import to_binary

testdata = load_json_testcases(to_binary.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_to_binary(input_data, expected):
    assert to_binary(*input_data) == expected
