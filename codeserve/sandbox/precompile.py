"""Candidates' code compiled by the harness, for the sandbox's workers (sent marshalled: they
run this same interpreter).

Compiling in a candidate's freshly forked process is dear: the compiler writes to dozens of
the zygote's pages, each a copy-on-write fault (~2 us on a VM), so a HumanEval program's
compile cost its process ~0.2 ms of its ~1.6 ms; here, in a warm process, it costs 45-80 us.
Compiling runs none of the program's code: the untrusted part, running it, stays in
the sandbox. Whatever does not compile cleanly here (errors, warnings, __future__ imports,
size) is left to the candidate's process, which compiles it as before, so verdicts and output
are the same either way.
"""

from __future__ import annotations

import functools
import marshal
import threading
import warnings

from codeserve.sandbox.candidate_exec import FILENAME, compile_alone, compile_tests

# Beyond this, leave compiling to the candidate: the harness's time (and, in the gateway, its
# GIL) is shared by all workers. Programs are ~1 KB; 16 K characters compile in ~10-16 ms.
MAX_SOURCE_CHARS = 1 << 14

# compile() reports SyntaxWarnings through the process-wide warnings filters; the harness's
# threads take turns to change them, so that none restores another's temporary state.
_WARNINGS = threading.Lock()


@functools.lru_cache(maxsize=256)
def tests_code(tests: str) -> bytes:
    """A task's checking code compiled once for every worker; b"" when there is none or it only
    compiles with the program."""
    code = compile_tests(tests) if tests else None
    return marshal.dumps(code) if code is not None else b""


def program_code(program: str, tests: str, compiled_tests: bytes) -> bytes:
    """A candidate's program compiled as its own process would (`compile_alone`), or b"" to
    leave that to its process: when it must be compiled with the tests, does not compile, is
    big, or warns (the warning belongs in the candidate's output, where its own compile puts
    it, not on the harness's stderr)."""
    if len(program) > MAX_SOURCE_CHARS or (tests and not compiled_tests):
        return b""
    with _WARNINGS, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = compile_alone(program)
        except Exception:
            code = None
    ours = False
    for warning in caught:
        if warning.filename == FILENAME:
            ours = True
        else:  # another thread's, caught meanwhile: give it back to the filters it escaped
            warnings.warn_explicit(
                warning.message,
                warning.category,
                warning.filename,
                warning.lineno,
                source=warning.source,
            )
    return marshal.dumps(code) if code is not None and not ours else b""
