"""Python source text for the generated code: literals, identifiers and names.

The rest of the code generator writes Python through these helpers: :func:`py_literal` turns a
compile-time value into a literal, :func:`camel_case` makes a class name, :class:`_Names` hands
out distinct variable and argument names that stay clear of the names the generated code itself
uses, and :func:`_docstring` wraps a docstring. :class:`_Unsupported` is how any part of the
generator says that the structured form cannot express a graph, so the caller tries a flatter
one.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import textwrap

from nndsl.ir.types import TensorType

TORCH_DTYPES = {"f32": "torch.float32", "f16": "torch.float16", "bf16": "torch.bfloat16",
                "f64": "torch.float64", "i64": "torch.int64", "i32": "torch.int32",
                "i8": "torch.int8", "u8": "torch.uint8", "i4": "torch.uint8",
                "bool": "torch.bool"}

# Names the generated code itself uses; no variable, argument or symbol may take them.
_HARD_RESERVED = frozenset(keyword.kwlist) | {
    "self", "torch", "nn", "F", "float", "getattr", "super", "isinstance", "type", "ValueError",
    "_SPEC", "_check_params", "_same", "_cli", "_scope"}
_BUILTINS = frozenset(dir(builtins))


class _Unsupported(Exception):
    """The structured form cannot express this graph; the caller falls back to a flatter one."""


# ---- literals ----

def py_literal(v) -> str:
    """A Python literal for a compile-time value (numbers, strings, bools, tuples, dtypes)."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else 'float("-inf")'
        return repr(v)
    if isinstance(v, str):
        return _str_lit(v)
    if isinstance(v, (tuple, list)):
        items = [py_literal(x) for x in v]
        return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if type(v).__name__ == "DType" and isinstance(getattr(v, "name", None), str):
        return _str_lit(v.name)
    raise _Unsupported(f"no Python literal for {type(v).__name__}")


def _str_lit(s: str) -> str:
    """A string literal, in double quotes where that needs no escapes."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    return repr(s)


def _collapse(v) -> str:
    """``(3, 3)`` -> ``3``: PyTorch takes one int for a uniform kernel, stride or padding."""
    if isinstance(v, (tuple, list)) and v and all(x == v[0] for x in v) and \
            isinstance(v[0], int) and not isinstance(v[0], bool):
        return str(v[0])
    return py_literal(v)


def _uniform(v, value) -> bool:
    """Whether a value or every item of a tuple of values is ``value``."""
    vals = v if isinstance(v, (tuple, list)) else (v,)
    return all(x == value for x in vals)


def _shape_text(t: TensorType) -> str:
    """A type as the comment after a line: ``(N, 10)``, with the dtype when it is not f32."""
    dims = [str(d) for d in t.shape]
    body = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    return body if t.dtype == "f32" else f"{body} {t.dtype}"


def _docstring(text: str, indent: str, width: int = 99) -> list[str]:
    """The lines of a docstring at ``indent``, wrapped to ``width`` (no-break spaces hold)."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = []
    for para in text.split("\n"):
        lines += textwrap.wrap(para, width - len(indent) - 3, break_long_words=False,
                               break_on_hyphens=False) or [""]
    lines = [ln.replace("\xa0", " ") for ln in lines]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{ln}" if ln else "" for ln in lines[1:]]
    out.append(f'{indent}"""')
    return out


# ---- names ----

def _ident(text: str) -> str:
    """A Python identifier made from any text."""
    s = re.sub(r"\W", "_", text)
    if not s or not s.isidentifier():
        s = "v_" + s
        if not s.isidentifier():
            s = "v"
    if s[0].isdigit():
        s = "v_" + s
    return s


def _is_attr_name(key: str) -> bool:
    """Whether ``self.<key>`` is valid Python."""
    return key.isidentifier() and not keyword.iskeyword(key)


def camel_case(name: str, fallback: str) -> str:
    """A class name for a spec name (``res_block`` -> ``ResBlock``); ``fallback`` mends names
    that would start with a digit or collide with a keyword, builtin or reserved name."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    s = "".join(p[:1].upper() + p[1:] for p in parts)
    if not s or s[0].isdigit():
        s = fallback + s
    if keyword.iskeyword(s) or s in _HARD_RESERVED or s in _BUILTINS:
        s += fallback
    return s


class _Names:
    """Allocates distinct Python names within one function or signature."""

    def __init__(self, reserved=()):
        self.used: set[str] = set(_HARD_RESERVED) | set(reserved)

    def take(self, want: str, shadow_builtins: bool = False) -> str:
        base = _ident(want)
        if base in _HARD_RESERVED or (not shadow_builtins and base in _BUILTINS):
            base += "_"
        name, i = base, 2
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name
