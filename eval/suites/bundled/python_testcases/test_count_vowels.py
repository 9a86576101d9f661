import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.count_vowels import count_vowels
else:
    from python_programs.count_vowels import count_vowels

testdata = load_json_testcases(count_vowels.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_count_vowels(input_data, expected):
    assert count_vowels(*input_data) == expected
