"""codeserve.sandbox.values: plain data only, the same bytes from C and Python, and a decoder
that no input can crash or make allocate more than that input warrants."""

from __future__ import annotations

import collections
import hashlib
import math
import os
import random

import pytest

from codeserve.sandbox import values
from codeserve.sandbox.values import Refused, _PyDecoder, _PyEncoder

NATIVE = values._native is not None
PLAIN = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**200),
    10**5000,
    1.5,
    -0.0,
    float("inf"),
    1 + 2j,
    "",
    "abc",
    "é\ud800x",
    b"\x00\xff",
    bytearray(b"ab"),
    [],
    [1, [2, (3,)]],
    (),
    {"a": 1, 2: [3], (1, "x"): frozenset({4})},
    {1, 2},
    frozenset({"x"}),
    collections.Counter("hello"),
    collections.OrderedDict([("b", 1), ("a", 2)]),
    collections.defaultdict(list, {1: [2]}),
    collections.deque([1, 2]),
]


def py_encode(value: object, cap: int = values.MAX_BYTES, inline: int = values.MAX_BYTES):
    return _PyEncoder(cap, values.MAX_NODES, inline).run(value)


def py_decode(data: bytes) -> object:
    return _PyDecoder(data, 0, len(data)).run()


@pytest.mark.parametrize("value", PLAIN, ids=lambda v: type(v).__name__)
def test_plain_data_round_trips_with_its_types(value: object) -> None:
    data = values.encode(value, cap=values.MAX_BYTES)
    assert py_encode(value) == data  # the Python twin writes the same bytes
    for decode in (values.decode, py_decode):
        back = decode(data)
        assert back == value and type(back) is type(value)
        if isinstance(value, collections.OrderedDict):
            assert list(back) == list(value)


def test_nan_round_trips_but_is_not_equal() -> None:
    back = values.decode(values.encode([float("nan")]))
    assert math.isnan(back[0]) and back != [float("nan")]


class Liar(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


class Opaque:
    pass


def recursive() -> list:
    x: list = []
    x.append(x)
    return x


def deep() -> list:
    x: list = []
    for _ in range(10_000):
        x = [x]
    return x


def shared() -> list:
    x: list = [1]
    for _ in range(64):
        x = [x, x]
    return x


@pytest.mark.parametrize(
    "value,reason",
    [
        (Liar(1), "subclass of int"),
        (Opaque(), "cannot be compared safely"),
        ([Opaque()], "cannot be compared safely"),
        ({1: Liar(2)}, "subclass of int"),
        (type("S", (str,), {})("x"), "subclass of str"),
        ((i for i in []), "generator"),
        (recursive(), "nested deeper"),
        (deep(), "nested deeper"),
        (shared(), "more than"),
    ],
)
@pytest.mark.parametrize("native", [True, False] if NATIVE else [False])
def test_what_is_not_plain_data_is_refused_with_a_reason(
    value: object, reason: str, native: bool
) -> None:
    with pytest.raises(Refused, match=reason):
        if native:
            values.encode_or_digest(value, max_nodes=1 << 20)
        else:
            _PyEncoder(values.MAX_BYTES, 1 << 20, values.INLINE_MAX).run(value)


def test_nothing_of_the_value_runs_while_it_is_encoded() -> None:
    calls = []

    class Spy(dict):
        def __iter__(self):
            calls.append("iter")
            return super().__iter__()

        def keys(self):
            calls.append("keys")
            return super().keys()

    with pytest.raises(Refused):
        values.encode(Spy(a=1))
    assert calls == []


def test_big_values_stream_into_their_digest() -> None:
    for size in (0, 1, 55, 56, 64, 65, 1000, 3 * (1 << 20) + 7):
        data = os.urandom(size)
        full = values.encode(data, cap=1 << 30)
        expected = (len(full), hashlib.sha256(full).digest())
        assert values.encode_or_digest(data, inline_max=0) == expected  # SHA-256 in C
        assert py_encode(data, inline=0) == expected
    big = ["x" * 1000] * 3000  # 3 MB encoded: over INLINE_MAX
    size, digest = values.encode_or_digest(big)
    assert size > values.INLINE_MAX and digest == values.digest(big)[1]
    assert values.encode_or_digest(["x"]) == values.encode(["x"])


@pytest.mark.parametrize(
    "data,why",
    [
        (b"", "truncated"),
        (b"l\xff\xff\xff\xff", "more items than bytes left"),
        (b"s\x00\x00\x00\x05ab", "past the end"),
        (b"d\x00\x00\x00\x01l\x00\x00\x00\x00N", "unhashable"),
        (b"Z\x00\x00\x00\x00", "unknown tag"),
        (b"NN", "left over"),
        (b"I\x00\x00\x00\x02zz", "bad int"),
        (b"l\x00\x00\x00\x01" * 600 + b"N", "too deep"),
    ],
)
def test_malformed_bytes_are_a_value_error(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        values.decode(data)
    with pytest.raises(ValueError):
        py_decode(data)


def test_the_decoder_survives_any_bytes() -> None:
    rng = random.Random(21)
    seeds = [values.encode(v, cap=1 << 24) for v in PLAIN[:20]]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):  # flip, cut or grow
            if data and rng.random() < 0.6:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif rng.random() < 0.5:
                del data[rng.randrange(len(data) + 1) :]
            else:
                data += rng.randbytes(rng.randint(1, 8))
        for decode in (values.decode, py_decode):
            try:
                decode(bytes(data))
            except ValueError:
                pass


@pytest.mark.skipif(not NATIVE, reason="numpy scalars: the C side")
def test_numpy_scalars_are_their_builtin_value() -> None:
    np = pytest.importorskip("numpy")
    assert values.decode(values.encode([np.float64(1.5), np.int64(3), np.bool_(True)])) == [
        1.5,
        3,
        True,
    ]
    with pytest.raises(Refused, match="ndarray"):
        values.encode(np.array([1, 2]))
