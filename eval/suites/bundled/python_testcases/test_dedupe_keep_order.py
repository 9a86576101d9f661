import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.dedupe_keep_order import dedupe_keep_order
else:
    from python_programs.dedupe_keep_order import dedupe_keep_order

testdata = load_json_testcases(dedupe_keep_order.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_dedupe_keep_order(input_data, expected):
    assert dedupe_keep_order(*input_data) == expected
