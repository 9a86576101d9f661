import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.reverse_words import reverse_words
else:
    from python_programs.reverse_words import reverse_words

testdata = load_json_testcases(reverse_words.__name__)


@pytest.mark.parametrize("input_data,expected", testdata)
def test_reverse_words(input_data, expected):
    assert reverse_words(*input_data) == expected
