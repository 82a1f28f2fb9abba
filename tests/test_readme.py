"""The README stays true to the code: its layout section names every module, and code comments and
docstrings carry no machine timings (they go stale; they belong in docs/measurements.md and the
README's tables)."""
import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastconv"


def _layout_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Layout", 1)[1]
    return section.split("```", 2)[1]


def _modules():
    return sorted(path.relative_to(ROOT) for path in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", _modules(), ids=str)
def test_layout_names_every_module(module):
    assert module.name in _layout_block(), f"README's layout section does not mention {module}"


def test_layout_names_the_test_helpers():
    layout = _layout_block()
    helpers = [path.name for path in (ROOT / "tests").glob("*.py")
               if not path.name.startswith("test_") and path.name != "conftest.py"]
    assert helpers and all(name in layout for name in helpers), helpers


# A number followed by a time unit or a throughput: "1.3 ms", "42 us", "409 GFLOP/s", "10x slower".
TIMING = re.compile(r"\d\s?(ms|µs|us|ns)\b|GFLOP/s|\d+(\.\d+)?x (faster|slower)")


def _comments_and_docstrings(path):
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    # docstrings of modules, classes, functions and attributes: string expression statements
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            yield node.lineno, node.value.value


@pytest.mark.parametrize("module", _modules(), ids=str)
def test_no_machine_timings_in_comments(module):
    found = [(line, TIMING.search(text).group(0))
             for line, text in _comments_and_docstrings(ROOT / module) if TIMING.search(text)]
    assert not found, f"{module}: timings in comments/docstrings {found} (move them to docs/measurements.md)"
