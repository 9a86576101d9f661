import json
from pathlib import Path

CASES_DIR = Path(__file__).resolve().parent.parent / "json_testcases"


def load_json_testcases(name):
    """Each line of json_testcases/NAME.json is [args_list, expected]."""
    lines = (CASES_DIR / f"{name}.json").read_text().splitlines()
    return [tuple(json.loads(line)) for line in lines if line.strip()]
