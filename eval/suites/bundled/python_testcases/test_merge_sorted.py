import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.merge_sorted import merge_sorted
else:
    from python_programs.merge_sorted import merge_sorted

testdata = load_json_testcases(merge_sorted.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_merge_sorted(input_data, expected):
    assert merge_sorted(*input_data) == expected
