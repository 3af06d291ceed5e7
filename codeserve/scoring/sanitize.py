"""Turn a chat/instruct model's answer into a program the scorer can run.

Instruct models wrap code in Markdown fences, add prose, example calls and `if __name__` blocks.
`extract_code` pulls the code out; `sanitize` keeps the imports plus the top-level definitions the
entry point needs (transitively), so that stray test code cannot fail or hang a correct answer.
"""

from __future__ import annotations

import ast
import re

# ```python / ```py / ```python3 / bare ``` fences; the closing fence may be missing when the
# answer was cut by max_tokens.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.M | re.S)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}

_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def extract_code(text: str) -> str:
    """The Python code in a model answer: its fenced Python blocks joined in order, else the
    longest prefix-trimmed stretch of lines that parses, else the text as is."""
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    parseable = [block for block in blocks if _parses(block)]
    if parseable:
        return "\n".join(block.rstrip() + "\n" for block in parseable)
    if blocks:
        return max(blocks, key=len)
    return _longest_parseable_span(text)


def sanitize(code: str, entry_point: str | None) -> str:
    """Imports plus the definitions `entry_point` depends on, in source order.

    Without an entry point, or when the code does not define it, every import and top-level
    definition is kept (but no top-level statements such as calls, prints or asserts)."""
    code = _longest_parseable_prefix(code)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines(keepends=True)
    definitions = _top_level_definitions(tree)
    if entry_point and entry_point in definitions:
        keep_names = _dependency_closure(entry_point, definitions)
    else:
        keep_names = set(definitions)
    kept: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            kept.append(_source_of(node, lines))
        elif (name := _defined_name(node)) and name in keep_names and definitions[name] is node:
            kept.append(_source_of(node, lines))
    return "\n".join(kept)


def extract_and_sanitize(text: str, entry_point: str | None) -> str:
    return sanitize(extract_code(text), entry_point)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _longest_parseable_prefix(code: str) -> str:
    """Cut trailing lines until the code parses: answers truncated by max_tokens end mid-line."""
    lines = code.splitlines(keepends=True)
    for end in range(len(lines), 0, -1):
        candidate = "".join(lines[:end])
        if _parses(candidate):
            return candidate
    return code


def _longest_parseable_span(text: str) -> str:
    """Unfenced answers: drop leading prose lines, then trailing junk."""
    lines = text.splitlines(keepends=True)
    for start, line in enumerate(lines):
        if re.match(r"(import |from |def |class |async def |@)", line):
            return _longest_parseable_prefix("".join(lines[start:]))
    return text


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, _Definition):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _top_level_definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Name -> the last top-level statement defining it (later definitions shadow earlier)."""
    found: dict[str, ast.stmt] = {}
    for node in tree.body:
        name = _defined_name(node)
        if name is not None:
            found[name] = node
    return found


def _dependency_closure(root: str, definitions: dict[str, ast.stmt]) -> set[str]:
    keep: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in keep or name not in definitions:
            continue
        keep.add(name)
        pending.extend(
            node.id for node in ast.walk(definitions[name]) if isinstance(node, ast.Name)
        )
    return keep


def _source_of(node: ast.stmt, lines: list[str]) -> str:
    decorators = getattr(node, "decorator_list", [])
    first = min([node.lineno, *(d.lineno for d in decorators)])
    last = node.end_lineno or node.lineno
    return "".join(lines[first - 1 : last]).rstrip() + "\n"
