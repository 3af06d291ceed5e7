"""Code extraction and sanitizing of chat/instruct answers."""

from __future__ import annotations

from codeserve.scoring.sanitize import extract_and_sanitize, extract_code, sanitize

ANSWER = '''Sure! Here is the solution:

```python
import math
from typing import List

LIMIT = 10

def helper(x: int) -> int:
    return x * 2

def unused():
    return 1 / 0

def target(xs: List[int]) -> int:
    """Doubles the largest."""
    return min(helper(max(xs)), LIMIT * math.ceil(1.0))

print(target([1, 2, 3]))
assert target([1]) == 2
```

And an example:

```python
if __name__ == "__main__":
    print(target([4]))
```
'''


def run(code: str, call: str) -> object:
    scope: dict[str, object] = {}
    exec(code, scope)
    return eval(call, scope)


def test_keeps_imports_and_needed_definitions_only() -> None:
    code = extract_and_sanitize(ANSWER, "target")
    assert "import math" in code and "from typing import List" in code
    assert "def helper" in code and "LIMIT = 10" in code and "def target" in code
    assert "unused" not in code
    assert "print(" not in code and "assert" not in code and "__main__" not in code
    assert run(code, "target([1, 7])") == 10


def test_prose_without_fences_is_trimmed_to_code() -> None:
    text = "Here you go:\ndef f(a):\n    return a + 1\n\nThis adds one to a."
    assert run(extract_and_sanitize(text, "f"), "f(1)") == 2


def test_truncated_answer_keeps_the_complete_part() -> None:
    text = "```python\ndef f():\n    return 3\n\ndef g(:\n    retu"
    code = extract_and_sanitize(text, "f")
    assert run(code, "f()") == 3
    assert "def g" not in code


def test_non_python_blocks_are_ignored_and_later_definitions_win() -> None:
    text = (
        "```bash\npip install x\n```\n```python\ndef f():\n    return 1\n```\n"
        "```py\ndef f():\n    return 2\n```"
    )
    code = extract_code(text)
    assert "pip install" not in code
    assert run(sanitize(code, "f"), "f()") == 2
    assert sanitize(code, "f").count("def f") == 1


def test_decorators_and_classes_are_kept_when_used() -> None:
    code = sanitize(
        "import functools\nclass Box:\n    v = 5\n\n@functools.lru_cache(None)\n"
        "def f(n):\n    return Box.v + n\n\nf(1)\n",
        "f",
    )
    assert "@functools.lru_cache(None)" in code and "class Box" in code
    assert not code.rstrip().endswith("f(1)")
    assert run(code, "f(1)") == 6


def test_missing_entry_point_keeps_every_definition_but_no_statements() -> None:
    code = sanitize("def a():\n    return 1\ndef b():\n    return 2\nprint(a())\n", "zzz")
    assert "def a" in code and "def b" in code and "print" not in code


def test_unparseable_text_is_returned_unchanged() -> None:
    assert sanitize("this is not code (", "f") == "this is not code ("
