"""docs/plugins.md and convkit/hookspecs.py cannot drift apart."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from convkit import hookspecs
from convkit.plugins import _SPECS, pm

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
HEADING = re.compile(r"^## (\w+)\((.*)\)$", re.MULTILINE)


def _sections() -> dict[str, tuple[str, str]]:
    """hook name -> (arguments in the heading, the section's text)."""
    text = DOC.read_text()
    found = list(HEADING.finditer(text))
    out = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        out[m.group(1)] = (m.group(2), text[m.end() : end])
    return out


def _typed(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def test_every_documented_hook_exists_and_every_hook_is_documented() -> None:
    assert sorted(_sections()) == sorted(_SPECS)
    assert len(_SPECS) == 11


@pytest.mark.parametrize("name", sorted(_SPECS))
def test_each_hook_is_documented_with_its_exact_signature(name: str) -> None:
    heading_args, body = _sections()[name]
    spec_args = list(inspect.signature(getattr(hookspecs, name)).parameters)
    assert heading_args == ", ".join(spec_args)
    block = re.search(r"```python\n(.*?)\n```", body, re.DOTALL)
    assert block is not None, f"{name}: no signature block"
    assert block.group(1) == _typed(name)
    for arg in spec_args:
        assert f"- `{arg}` —" in body, f"{name}: argument {arg} not described"
    for part in ("**When:**", "**Return:**", "**Raises:**"):
        assert part in body, f"{name}: no {part}"
    firstresult = bool(pm.hook.__dict__[name].spec.opts.get("firstresult"))
    assert ("*firstresult*" in body) is firstresult
    assert body.count("```python") >= 2, f"{name}: no example"


@pytest.mark.parametrize("name", sorted(_SPECS))
def test_each_spec_docstring_has_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Example::" in doc and "@hookimpl" in doc
    assert "raise" in doc  # what a failing plugin does to the call
