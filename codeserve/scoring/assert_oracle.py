"""Input/expected pairs for benchmarks whose checks are assert statements (HumanEval's `check`,
the infilling files' (the same), MBPP's asserts), so they are judged in the harness too.

For each task, a "record" job (trusted code) runs the canonical solution under the task's own
checks with the entry point wrapped, seeding `random` first (HumanEval/53 and others draw their
inputs): every call the checks make becomes an input, and the canonical output the expected
one. How each assert compares is read from the checks' syntax, by the line the call came from
(`call_modes`): `f(x) == y` (also `set(f(x)) == ...`, `tuple(...)`, `list(...)`, `sorted(...)`),
`assert f(x)`, `assert not f(x)`, `f(x) is True`, `abs(f(x) - y) < tol`,
`math.isclose(f(x), y, rel_tol=...)`; anything else is compared with ==. HumanEval/32
(find_zero), whose check asserts a property of the output, keeps that property. Since the
canonical output passes its assert, "equal to it" is "passes the assert" for ==, and the other
forms keep their own test. Arguments the set-up code builds as objects (MBPP 367's trees) are
sent as their source, evaluated in the candidate's process after the task's set-up code
(MBPP's test_imports and test_setup_code, run there as the original program runs them).
"""

from __future__ import annotations

import ast
import pickle
from collections import defaultdict
from collections.abc import Iterator

from codeserve.datasets import Benchmark, Family, Task
from codeserve.sandbox.candidate_exec import Opaque
from codeserve.sandbox.pool import Job, RunResult, SandboxPool
from codeserve.scoring.oracle import Mode, Oracle, TaskOracle, load_outputs, not_plain
from codeserve.scoring.plus_oracle import PlusSettings
from codeserve.scoring.programs import build_parts, canonical_completion

# HumanEval/32's check: math.fabs(poly(coeffs, candidate(coeffs))) < 1e-4
FIND_ZERO = Mode("find_zero", tol=1e-4)
_CONVERSIONS = ("set", "tuple", "list", "sorted")


def setup_code(benchmark: Benchmark, task: Task) -> str:
    """The part of a task's checking code that is not checks: MBPP's imports and set-up code,
    which the original program runs between the completion and the asserts."""
    if benchmark.family is not Family.MBPP:
        return ""
    parts = [p for p in (*task.test_imports, task.test_setup_code) if p and p.strip()]
    return "\n".join(parts) + "\n" if parts else ""


class AssertOracle(Oracle):
    """Expected outputs of one assert-based benchmark (cached beside the Plus ones)."""

    def __init__(
        self, benchmark: Benchmark, pool: SandboxPool, settings: PlusSettings | None = None
    ) -> None:
        self.settings = settings or PlusSettings()
        super().__init__(benchmark, pool, self.settings.cache_dir)

    def compute(self) -> dict[str, TaskOracle]:
        jobs, checks = [], []
        for task in self.benchmark.tasks:
            program, tests = build_parts(
                self.benchmark, task, canonical_completion(self.benchmark, task)
            )
            checks.append(tests)
            jobs.append(
                Job(
                    kind="record",
                    program=program,
                    entry_point=task.entry_point,
                    checks=tests,
                    timeout=self.settings.truth_timeout_s,
                    memory_mb=self.settings.memory_mb,
                )
            )
        oracles = {}
        for task, tests, result in zip(self.benchmark.tasks, checks, self.run_all(jobs)):
            oracle = self._oracle(task, tests, result)
            if oracle is not None:
                oracles[task.task_id] = oracle
        return oracles

    def _oracle(self, task: Task, tests: str, result: RunResult) -> TaskOracle | None:
        tid = task.task_id
        if not result.passed:
            self.failures[tid] = (
                f"canonical solution {result.status} under its checks: {result.detail}"
            )
            return None
        try:
            recorded = load_outputs(result.payload)["calls"]
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError) as exc:
            self.failures[tid] = f"recorded calls unreadable: {exc}"
            return None
        modes, sources = call_modes(tests, {task.entry_point, *_check_params(tests)})
        find_zero = self.benchmark.family is not Family.MBPP and task.entry_point == "find_zero"
        inputs, expected, exprs, kinds, lines = [], [], {}, [], []
        for i, (args, out, line, _) in enumerate(recorded):
            if args is None:
                if line not in sources:
                    self.failures[tid] = (
                        f"the call on line {line} of the checks passes "
                        "objects that are not plain data, from an expression "
                        "that cannot be re-run alone"
                    )
                    return None
                exprs[i] = sources[line]
            mode = FIND_ZERO if find_zero else modes.get(line, Mode())
            if mode.kind in ("truthy", "falsy"):  # only its truth value is checked (and sent)
                out = out.truth if isinstance(out, Opaque) else bool(out)
            why = not_plain(out)
            if why is not None:
                self.failures[tid] = f"canonical output of the call on line {line}: {why}"
                return None
            inputs.append(args)
            expected.append(out)
            kinds.append(mode)
            lines.append(line)
        return TaskOracle(
            tid,
            task.entry_point,
            inputs,
            len(inputs),
            expected,
            exprs=exprs,
            setup=setup_code(self.benchmark, task),
            modes=kinds,
            lines=lines,
        )


def _check_params(tests: str) -> Iterator[str]:
    """The parameter names of HumanEval's `def check(candidate)` (the name its asserts call)."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.args:
            yield node.args.args[0].arg


def call_modes(tests: str, names: set[str]) -> tuple[dict[int, Mode], dict[int, str]]:
    """For the checks' calls of `names`: line -> how its assert compares the output, and line
    -> the source of its arguments as a tuple (for calls whose arguments are names or
    literals that can be evaluated alone, at module level). A line with calls compared in
    different ways gets ==; calls in an assert's message (only made when it fails) yield to
    the others."""
    tree = ast.parse(tests)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: dict[int, list[tuple[int, bool, Mode, str | None]]] = defaultdict(list)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            mode, in_message = _mode_of(node, parents)
            source = None
            if (
                not node.keywords
                and not any(isinstance(a, ast.Starred) for a in node.args)
                and _at_module_level(node, parents)
            ):
                source = "(" + "".join(ast.unparse(a) + ", " for a in node.args) + ")"
            span = (node.end_lineno or node.lineno) - node.lineno
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                found[line].append((span, in_message, mode, source))
    modes, sources = {}, {}
    for line, entries in found.items():
        entries.sort(key=lambda e: (e[1], e[0]))  # outside a message first, innermost first
        preferred = [e for e in entries if e[1] == entries[0][1]]
        kinds = {e[2] for e in preferred}
        modes[line] = kinds.pop() if len(kinds) == 1 else Mode()
        if len(preferred) == 1 and preferred[0][3] is not None:
            sources[line] = preferred[0][3]
    return modes, sources


def _at_module_level(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(
            node,
            (
                ast.FunctionDef,
                ast.AsyncFunctionDef,
                ast.Lambda,
                ast.ClassDef,
                ast.For,
                ast.While,
                ast.comprehension,
            ),
        ):
            return False
    return True


def _mode_of(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> tuple[Mode, bool]:
    """How the assert around `call` compares its output, and whether the call is in the
    assert's message."""
    in_message = False
    node: ast.AST = call
    while node in parents and not isinstance(node, ast.stmt):
        above = parents[node]
        if isinstance(above, ast.Assert) and above.msg is node:
            in_message = True
        node = above
    statement = node if isinstance(node, ast.Assert) else None
    node = call
    parent: ast.AST | None = parents.get(call)
    converted = None
    if (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Name)
        and parent.func.id in _CONVERSIONS
        and parent.args == [node]
        and not parent.keywords
    ):
        converted, node, parent = parent.func.id, parent, parents.get(parent)
    if statement is None:
        return Mode(), in_message
    if parent is statement and statement.test is node and converted is None:
        return Mode("truthy"), in_message
    if (
        isinstance(parent, ast.UnaryOp)
        and isinstance(parent.op, ast.Not)
        and statement.test is parent
        and converted is None
    ):
        return Mode("falsy"), in_message
    if isinstance(parent, ast.Compare) and len(parent.ops) == 1 and statement.test is parent:
        op, other = parent.ops[0], parent.comparators[0]
        if isinstance(op, ast.Eq):
            return Mode(converted or "eq"), in_message
        if (
            isinstance(op, ast.Is)
            and parent.left is node
            and converted is None
            and isinstance(other, ast.Constant)
            and other.value in (True, False, None)
        ):
            return Mode("is"), in_message
    if converted is None and isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Sub):
        wrapper = parents.get(parent)
        compare = parents.get(wrapper) if wrapper is not None else None
        if (
            isinstance(wrapper, ast.Call)
            and isinstance(wrapper.func, ast.Name)
            and wrapper.func.id == "abs"
            and wrapper.args == [parent]
            and isinstance(compare, ast.Compare)
            and compare.left is wrapper
            and len(compare.ops) == 1
            and isinstance(compare.ops[0], (ast.Lt, ast.LtE))
            and statement.test is compare
        ):
            tol = _number(compare.comparators[0])
            if tol is not None:
                return Mode("close", tol=tol, strict=isinstance(compare.ops[0], ast.Lt)), in_message
    if (
        converted is None
        and isinstance(parent, ast.Call)
        and statement.test is parent
        and ast.unparse(parent.func) in ("math.isclose", "isclose")
        and node in parent.args[:2]
        and len(parent.args) == 2
    ):
        options = {k.arg: _number(k.value) for k in parent.keywords}
        if set(options) <= {"rel_tol", "abs_tol"} and None not in options.values():
            return Mode(
                "isclose", tol=options.get("abs_tol") or 0.0, rel=options.get("rel_tol") or 1e-9
            ), in_message
    return Mode(), in_message


def _number(node: ast.AST) -> float | None:
    """A constant number (1e-6, -0.5); None for anything else."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None
    return float(value) if type(value) in (int, float) else None
