"""Tensor types: a dtype and a shape whose dims are ints or symbolic expressions.

Symbolic dims (``N``, ``T``, ``C*H*W``, ``(H - 1)//2 + 1``) stay symbolic end to end. A
:class:`SymDim` is a polynomial with integer coefficients over *atoms*; an atom is a symbol name
or an opaque floor division ``(poly)//k`` that did not divide exactly. Two dims are equal when
their canonical forms are equal, which is all the shape checker needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Union

DTYPES = ("f32", "f16", "bf16", "f64", "i64", "i32", "i8", "u8", "i4", "bool")
FLOAT_DTYPES = ("f32", "f16", "bf16", "f64")
INT_DTYPES = ("i64", "i32", "i8", "u8")
QUANT_DTYPES = ("i8", "u8", "i4")   # what quantized weights and activations are stored as
BITS = {"f32": 32, "f16": 16, "bf16": 16, "f64": 64, "i64": 64, "i32": 32, "i8": 8, "u8": 8,
        "i4": 4, "bool": 8}


def storage_shape(dtype: str, shape: tuple) -> tuple:
    """The shape a tensor of ``dtype`` is stored in: ``i4`` packs two values a byte along the
    last dim (the low nibble holds the even element, as ONNX's INT4 does), everything else is
    stored as it is."""
    if dtype != "i4" or not shape:
        return tuple(shape)
    return tuple(shape[:-1]) + ((shape[-1] + 1) // 2,)


class SymDim:
    """A symbolic dimension: ``sum(coef * prod(atoms))``. Immutable and hashable."""

    __slots__ = ("terms", "_key")

    def __init__(self, terms: Mapping[tuple, int]):
        clean = {m: c for m, c in terms.items() if c != 0}
        self.terms = tuple(sorted(clean.items(), key=lambda t: (t[0] == (), _mono_str(t[0]))))
        self._key = None

    # construction
    @staticmethod
    def symbol(name: str) -> "SymDim":
        return SymDim({(("s", name),): 1})

    @staticmethod
    def lift(x: "Dim") -> "SymDim":
        return x if isinstance(x, SymDim) else SymDim({(): int(x)})

    def simplify(self) -> "Dim":
        """Plain ``int`` when the polynomial is a constant."""
        if not self.terms:
            return 0
        if len(self.terms) == 1 and self.terms[0][0] == ():
            return self.terms[0][1]
        return self

    # arithmetic
    def __add__(self, other):
        o = SymDim.lift(other)
        acc = dict(self.terms)
        for m, c in o.terms:
            acc[m] = acc.get(m, 0) + c
        return SymDim(acc).simplify()

    __radd__ = __add__

    def __neg__(self):
        return SymDim({m: -c for m, c in self.terms}).simplify()

    def __sub__(self, other):
        return self + (-SymDim.lift(other))

    def __rsub__(self, other):
        return SymDim.lift(other) + (-self)

    def __mul__(self, other):
        o = SymDim.lift(other)
        acc: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in o.terms:
                m = tuple(sorted(m1 + m2, key=_atom_str))
                acc[m] = acc.get(m, 0) + c1 * c2
        return SymDim(acc).simplify()

    __rmul__ = __mul__

    def __floordiv__(self, k):
        if isinstance(k, SymDim):
            if k == self:
                return 1
            raise ValueError("division by a symbolic dim")
        k = int(k)
        if k == 1:
            return self
        if all(c % k == 0 for _, c in self.terms):
            return SymDim({m: c // k for m, c in self.terms}).simplify()
        return SymDim({(("f", self, k),): 1})

    def divisors(self) -> set[int]:
        """The denominators of every floor division inside this dim."""
        out: set[int] = set()
        for m, _ in self.terms:
            for atom in m:
                if atom[0] == "f":
                    out.add(atom[2])
                    out |= atom[1].divisors()
        return out

    def divisible_by(self, k: int) -> bool:
        return all(c % k == 0 for _, c in self.terms)

    # identity
    def key(self) -> str:
        if self._key is None:
            self._key = str(self)
        return self._key

    def __eq__(self, other):
        if isinstance(other, SymDim):
            return self.key() == other.key()
        return False

    def __hash__(self):
        return hash(self.key())

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for m, _ in self.terms:
            for atom in m:
                if atom[0] == "s":
                    out.add(atom[1])
                else:
                    out |= atom[1].symbols()
        return out

    def evaluate(self, env: Mapping[str, int]):
        """Value under ``env`` (symbol -> int or torch SymInt)."""
        total = 0
        for m, c in self.terms:
            prod = c
            for atom in m:
                if atom[0] == "s":
                    prod = prod * env[atom[1]]
                else:
                    prod = prod * (atom[1].evaluate(env) // atom[2])
            total = total + prod
        return total

    def __str__(self) -> str:
        parts = []
        for m, c in self.terms:
            mono = _mono_str(m)
            if not mono:
                body = str(abs(c))
            elif abs(c) == 1:
                body = mono
            else:
                body = f"{abs(c)}*{mono}"
            if not parts:
                parts.append(("-" if c < 0 else "") + body)
            else:
                parts.append(("- " if c < 0 else "+ ") + body)
        # constants last reads better: "H - 1" rather than "-1 + H"
        return " ".join(parts) if parts else "0"

    __repr__ = __str__


def _atom_str(a: tuple) -> str:
    if a[0] == "s":
        return a[1]
    inner = str(a[1])
    return f"({inner}//{a[2]})" if inner.isidentifier() else f"(({inner})//{a[2]})"


def _mono_str(m: tuple) -> str:
    return "*".join(_atom_str(a) for a in m)


Dim = Union[int, SymDim]


def equal_if_exact(a: Dim, b: Dim) -> bool:
    """Whether ``a == b`` whenever every floor division in them is exact.

    ``T//5 * 5 * 8`` and ``8*T`` are equal when 5 divides ``T`` (which a spec asserts), but not
    as polynomials. This compares them at several sizes that make every division exact.
    """
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    sa, sb = SymDim.lift(a), SymDim.lift(b)
    names = sorted(sa.symbols() | sb.symbols())
    lcm = 1
    for k in sa.divisors() | sb.divisors():
        lcm = lcm * k // math.gcd(lcm, k)
    for trial in range(4):
        env = {n: lcm * (2 + i + trial * 3) ** (1 + trial % 2) for i, n in enumerate(names)}
        if sa.evaluate(env) != sb.evaluate(env):
            return False
    return True


def dim_str(d: Dim) -> str:
    return str(d)


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def evaluate_dim(d: Dim, env: Mapping[str, int]):
    return d if isinstance(d, int) else d.evaluate(env)


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple  # of Dim

    @property
    def rank(self) -> int:
        return len(self.shape)

    def numel(self) -> Dim:
        n: Dim = 1
        for d in self.shape:
            n = n * d
        return n

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for d in self.shape:
            if isinstance(d, SymDim):
                out |= d.symbols()
        return out

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    __repr__ = __str__
