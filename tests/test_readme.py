"""Every Python snippet in the README runs (in a scratch folder)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
REAL_MODEL = ('load_precision_pair("smollm2', 'from_pretrained("smollm2')


def _params():
    for i, code in enumerate(BLOCKS):
        real = any(marker in code for marker in REAL_MODEL)
        yield pytest.param(code, id=f"block{i}", marks=[pytest.mark.slow, pytest.mark.real_model] if real else [])


@pytest.mark.parametrize("code", list(_params()))
def test_readme_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md snippet", "exec"), {"__name__": "__readme__"})
