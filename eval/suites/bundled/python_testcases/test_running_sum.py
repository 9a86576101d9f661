import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.running_sum import running_sum
else:
    from python_programs.running_sum import running_sum

testdata = load_json_testcases(running_sum.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_running_sum(input_data, expected):
    assert running_sum(*input_data) == expected
