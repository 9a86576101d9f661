import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.is_prime import is_prime
else:
    from python_programs.is_prime import is_prime

testdata = load_json_testcases(is_prime.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_is_prime(input_data, expected):
    assert is_prime(*input_data) == expected
