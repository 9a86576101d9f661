import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.rotate_right import rotate_right
else:
    from python_programs.rotate_right import rotate_right

testdata = load_json_testcases(rotate_right.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_rotate_right(input_data, expected):
    assert rotate_right(*input_data) == expected
