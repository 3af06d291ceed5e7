"""A candidate's outputs as plain data: `encode` in its process, `decode` in the harness.

The format and its rules are described beside the C implementation in
`codeserve/sandbox/_zygote_loop.c` ("Values"), which both sides use when it is built; this module
is the same in Python for when it is not (the two give identical bytes; tests check it).

Only plain data crosses: exact builtin types, recursively, plus collections' Counter,
OrderedDict, defaultdict and deque and numpy's scalars (as their builtin value). A user-defined
object or a subclass of a builtin (which could lie in __eq__, __hash__ or __class__) is refused
with a reason, and so is a value nested deeper than MAX_DEPTH (a recursive one), bigger than its
byte budget, or with more than MAX_NODES parts. Nothing calls the value's own methods.

Imported by the sandbox zygote, before any candidate runs: the C side keeps the collections
types it was given then, whatever a candidate later does to the `collections` module.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable
from typing import Any

try:
    from codeserve.sandbox import _zygote_loop as _native
except ImportError:  # not built: the Python twin below
    _native = None

MAX_DEPTH = 512
# One output's budget, and how many parts it may have (a value that shares itself, such as
# [x, x] nested 40 levels, is small in memory and astronomical when written out). Mbpp/255's
# biggest expected output is 1.66M tuples of 77 strings: ~128M parts, ~1.2 GB.
MAX_BYTES = 4 << 30
MAX_NODES = 1 << 28
# Outputs bigger than this travel as their size and SHA-256 (see codeserve/sandbox/calls.py):
# their encoding is streamed into the hash, never held.
INLINE_MAX = 1 << 20

_COLLECTIONS = (
    collections.Counter,
    collections.OrderedDict,
    collections.defaultdict,
    collections.deque,
)
if _native is not None:
    _native.set_types(*_COLLECTIONS)


class Refused(ValueError):
    """The value is not plain data (or too deep or too big); the message says why."""


def encode(value: Any, cap: int = INLINE_MAX << 4, max_nodes: int = MAX_NODES) -> bytes:
    """The encoding of `value` (Refused past `cap` bytes: for values known to be small)."""
    out = encode_or_digest(value, cap, cap, max_nodes)
    assert isinstance(out, bytes)
    return out


def encode_or_digest(
    value: Any, inline_max: int = INLINE_MAX, cap: int = MAX_BYTES, max_nodes: int = MAX_NODES
) -> bytes | tuple[int, bytes]:
    """The encoding of `value`, or (its size, its SHA-256) when longer than `inline_max`.
    Refused (a ValueError) when the value is not plain data, nests deeper than MAX_DEPTH, or
    passes `cap` bytes or `max_nodes` parts."""
    if _native is not None:
        try:
            return _native.encode(value, cap, max_nodes, inline_max)
        except ValueError as exc:
            raise Refused(str(exc)) from None
    return _PyEncoder(cap, max_nodes, inline_max).run(value)


def digest(value: Any) -> tuple[int, bytes]:
    """(size, SHA-256) of the encoding of `value`, streamed (Refused as `encode_or_digest`)."""
    out = encode_or_digest(value, inline_max=0)
    if isinstance(out, bytes):  # empty encodings do not exist; kept for the type checker
        import hashlib

        return len(out), hashlib.sha256(out).digest()
    return out


def decode(data: bytes | bytearray | memoryview, start: int = 0, end: int = -1) -> Any:
    """The value in data[start:end] (ValueError when those bytes are not one)."""
    if _native is not None:
        return _native.decode(data, start, end)
    return _PyDecoder(data, start, len(data) if end < 0 else end).run()


_SCALARS = {int, float, bool, complex, str, bytes}
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python (a program can make one)
_BUILTINS = (int, float, str, bytes, list, tuple, dict, set, frozenset, complex, bytearray)
_SEQ_TAGS: dict[type, str] = {list: "l", tuple: "t", set: "e", frozenset: "z"}
_SEQUENCES: dict[str, Callable[[list[Any]], Any]] = {
    "l": list,
    "t": tuple,
    "e": set,
    "z": frozenset,
    "Q": collections.deque,
}
_MAPPINGS: dict[str, Callable[[dict[Any, Any]], Any]] = {
    "d": dict,
    "C": collections.Counter,
    "O": collections.OrderedDict,
    "D": lambda d: collections.defaultdict(None, d),
}
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


class _PyEncoder:
    def __init__(self, cap: int, max_nodes: int, inline_max: int) -> None:
        self.out = bytearray()
        self.cap, self.max_nodes, self.nodes, self.depth = cap, max_nodes, 0, 0
        self.inline_max, self.flushed = inline_max, 0
        self.hash: Any = None  # a hashlib sha256 once the output outgrows inline_max
        self.types: dict[type, str] = {
            collections.Counter: "C",
            collections.OrderedDict: "O",
            collections.defaultdict: "D",
            collections.deque: "Q",
        }

    def run(self, value: Any) -> bytes | tuple[int, bytes]:
        try:
            self.value(value)
        except RecursionError:  # Python's own limit can come first (two frames a level)
            raise Refused(
                f"output nested deeper than {MAX_DEPTH} levels (or containing itself)"
            ) from None
        if self.hash is None:
            return bytes(self.out)
        self.hash.update(self.out)
        return self.flushed + len(self.out), self.hash.digest()

    def put(self, data: bytes) -> None:
        if len(data) > self.cap - len(self.out) - self.flushed:
            raise Refused(f"output larger than {self.cap} bytes when serialised")
        self.out += data
        if self.hash is None and len(self.out) > self.inline_max:
            import hashlib

            self.hash = hashlib.sha256()
        if self.hash is not None and len(self.out) > 1 << 20:
            self.hash.update(self.out)
            self.flushed += len(self.out)
            self.out.clear()

    def tag_len(self, tag: str, n: int) -> None:
        if n > 0xFFFFFFFF:
            raise Refused("output has a part of more than 2**32 items or bytes")
        self.put(tag.encode() + _U32.pack(n))

    def value(self, v: Any) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise Refused(f"output has more than {self.max_nodes} parts")
        t = type(v)
        if v is None:
            self.put(b"N")
        elif v is True:
            self.put(b"T")
        elif v is False:
            self.put(b"F")
        elif t is int:
            if -(1 << 63) <= v < (1 << 63):
                self.put(b"i" + _I64.pack(v))
            else:
                digits = ("-" if v < 0 else "") + format(abs(v), "x")
                self.tag_len("I", len(digits))
                self.put(digits.encode())
        elif t is float:
            self.put(b"f" + _F64.pack(v))
        elif t is complex:
            self.put(b"c" + _F64.pack(v.real) + _F64.pack(v.imag))
        elif t is str:
            data = v.encode("utf-8", "surrogatepass")
            self.tag_len("s", len(data))
            self.put(data)
        elif t is bytes or t is bytearray:
            self.tag_len("b" if t is bytes else "a", len(v))
            self.put(bytes(v))
        elif t is list or t is tuple or t is set or t is frozenset or t is collections.deque:
            self.items(_SEQ_TAGS.get(t, "Q"), v, False)
        elif t is dict or t in self.types:
            self.items("d" if t is dict else self.types[t], v, True)
        elif t.__module__ == "numpy" and not t.__flags__ & _HEAPTYPE and t.__name__ != "ndarray":
            item = v.item()
            if type(item) not in _SCALARS:
                raise Refused(f"output of type numpy.{t.__name__} cannot be compared as plain data")
            self.value(item)
        else:
            base = next((b for b in t.__mro__[1:] if b in _BUILTINS), None)
            if base is not None:
                raise Refused(
                    f"output of type {t.__name__} (a subclass of {base.__name__}) "
                    "cannot be compared safely: only plain data can"
                )
            raise Refused(
                f"output of type {t.__name__} cannot be compared safely: only plain "
                "data can (None, bool, int, float, complex, str, bytes and lists, "
                "tuples, dicts and sets of them)"
            )

    def items(self, tag: str, v: Any, pairs: bool) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refused(f"output nested deeper than {MAX_DEPTH} levels (or containing itself)")
        if pairs:
            entries = (
                list(dict.items(v))
                if type(v) is not collections.OrderedDict
                else [(k, dict.__getitem__(v, k)) for k in v]
            )
            self.tag_len(tag, len(entries))
            for key, item in entries:
                self.value(key)
                self.value(item)
        else:
            self.tag_len(tag, len(v))
            for item in v:
                self.value(item)
        self.depth -= 1


class _PyDecoder:
    def __init__(self, data: bytes | bytearray | memoryview, start: int, end: int) -> None:
        self.data, self.pos, self.end, self.depth = bytes(data[start:end]), 0, end - start, 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"malformed value at byte {self.pos}: {why}")

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise self.fail("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def run(self) -> Any:
        try:
            value = self.value()
        except RecursionError:
            raise self.fail("nested too deep") from None
        if self.pos != self.end:
            raise self.fail("bytes left over")
        return value

    def value(self) -> Any:
        tag = chr(self.take(1)[0])
        if tag in "NTF":
            return {"N": None, "T": True, "F": False}[tag]
        if tag == "i":
            return _I64.unpack(self.take(8))[0]
        if tag == "f":
            return _F64.unpack(self.take(8))[0]
        if tag == "c":
            return complex(_F64.unpack(self.take(8))[0], _F64.unpack(self.take(8))[0])
        n = _U32.unpack(self.take(4))[0]
        if tag in "Isba":
            raw = self.take(n)
            if tag == "s":
                return raw.decode("utf-8", "surrogatepass")
            if tag == "b":
                return raw
            if tag == "a":
                return bytearray(raw)
            text = raw.decode("ascii", "replace")
            if not n or not all(
                c in "0123456789abcdefABCDEF" or (c == "-" and i == 0 and n > 1)
                for i, c in enumerate(text)
            ):
                raise self.fail("bad int digits")
            return int(text, 16)
        if tag not in "ltezQdCOD":
            raise self.fail("unknown tag")
        pairs = tag in "dCOD"
        if n > (self.end - self.pos) // (2 if pairs else 1):
            raise self.fail("more items than bytes left")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail("nested too deep")
        try:
            if pairs:
                items: dict[Any, Any] = {}
                for _ in range(n):
                    key = self.value()
                    items[key] = self.value()
                out: Any = _MAPPINGS[tag](items)
            else:
                out = _SEQUENCES[tag]([self.value() for _ in range(n)])
        except TypeError:
            raise self.fail("unhashable key or item") from None
        self.depth -= 1
        return out
