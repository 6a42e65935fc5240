"""Every Python snippet in the README and the docs runs (in a scratch folder)."""

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "guide.md", ROOT / "docs" / "research.md"]
REAL_MODEL = ('load_precision_pair("smollm2', 'from_pretrained("smollm2')


def _params():
    for doc in DOCS:
        blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL)
        for i, code in enumerate(blocks):
            real = any(marker in code for marker in REAL_MODEL)
            marks = [pytest.mark.slow, pytest.mark.real_model] if real else []
            yield pytest.param(textwrap.dedent(code), id=f"{doc.stem}-block{i}", marks=marks)


def test_docs_have_snippets():
    assert all(doc.exists() for doc in DOCS)
    assert len(list(_params())) >= 10


@pytest.mark.parametrize("code", list(_params()))
def test_readme_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md snippet", "exec"), {"__name__": "__readme__"})
