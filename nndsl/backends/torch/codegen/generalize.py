"""One class for all specializations of a block: the values that differ become arguments.

The generator first writes one class body per specialization of a block (its parameter values
and input shapes). :func:`generalize` merges the bodies of one block into one class whose
constructor takes the values that differ, found as expressions of the block's parameters and
its inputs' static dims::

    nn.Conv2d(64, 128, kernel_size=3, stride=2)     (c=128, stride=2, x: (N, 64, 56, 56))
    nn.Conv2d(128, 128, kernel_size=3)              (c=128, stride=1, x: (N, 128, 28, 28))
        ->  nn.Conv2d(in_c, c, kernel_size=3, stride=stride)

A keyword a body leaves out is the ``nn`` module's default (read from its signature), so the
bodies line up token by token. Bodies that differ in their lines (a projection shortcut present
in some) fall into two variants; the lines only one has are written under an ``if`` on the
constructor's arguments in ``__init__`` (the disjunction of the simple tests that are false on
every specialization without the extra lines, checked true on every one with them) and on the
presence of a member in ``forward``. Every specialization's values are checked: an integer that
no expression explains, more than two variants, or a test that does not separate them, and the
block keeps one class per specialization (``None``).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re

from nndsl.backends.torch.codegen.source import _BUILTINS, _HARD_RESERVED

# Names of the inputs' static dims that may become constructor arguments (by rank, axis) and
# those that only name sizes in shape comments.
ARG_DIMS = {2: {1: "in_features"}, 3: {1: "in_c", 2: "in_features"}, 4: {1: "in_c"},
            5: {1: "in_c"}}
COMMENT_DIMS = {3: {1: "T"}, 4: {2: "H", 3: "W"}, 5: {2: "D", 3: "H", 4: "W"}}

_INT = re.compile(r"(?<![\w.])(?<![eE][-+])\d+(?![\w.])")
_NN_LINE = re.compile(r"^(\s*self\.\w+ = )(nn\.(\w+))\((.*)\)$")
_COMMENT = "  # "


class _Fail(Exception):
    """The bodies cannot be merged."""


def _split(line: str) -> tuple[str, str]:
    """(code, comment) of one generated line."""
    i = line.find(_COMMENT)
    return (line, "") if i < 0 else (line[:i], line[i + len(_COMMENT):])


def _skeleton(line: str) -> str:
    """A line's code with its integers blanked: lines of two specializations that line up."""
    return _INT.sub("#", _split(line)[0])


# ---- keyword defaults of nn modules ----

def _nn_defaults(cls: str) -> dict:
    """The keyword arguments of ``nn.<cls>`` with their defaults as source text."""
    import torch

    mod = getattr(torch.nn, cls, None)
    if mod is None:
        return {}
    out = {}
    for name, p in inspect.signature(mod.__init__).parameters.items():
        if name == "self":
            continue
        if p.default is inspect.Parameter.empty:
            out[name] = None  # no default: every body must give it
        elif isinstance(p.default, (bool, int, float, str, type(None))):
            out[name] = repr(p.default) if not isinstance(p.default, str) else f'"{p.default}"'
    return out


def _call_parts(args: str):
    """Positional argument texts and keyword (name, text) pairs of a call's argument list."""
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError:
        raise _Fail("unparsable call")
    src = f"f({args})"
    pos = [ast.get_source_segment(src, a) for a in call.args]
    kws = [(k.arg, ast.get_source_segment(src, k.value)) for k in call.keywords]
    if any(k is None for k, _ in kws):
        raise _Fail("**kwargs")
    return pos, kws


def _normalize(bodies: list[list[str]]) -> tuple[list[list[str]], dict]:
    """Each ``self.x = nn.C(...)`` line with every keyword any body gives some ``nn.C``,
    the missing ones at their defaults; and the defaults, for dropping them again."""
    given: dict[str, list[str]] = {}
    for lines in bodies:
        for ln in lines:
            m = _NN_LINE.match(ln)
            if m:
                seen = given.setdefault(m.group(3), [])
                for k, _ in _call_parts(m.group(4))[1]:
                    if k not in seen:
                        given[m.group(3)].append(k)
    defaults = {cls: _nn_defaults(cls) for cls in given}
    out = []
    for lines in bodies:
        new = []
        for ln in lines:
            m = _NN_LINE.match(ln)
            if m:
                cls = m.group(3)
                pos, kws = _call_parts(m.group(4))
                have = dict(kws)
                order = [k for k in defaults[cls] if k in given[cls]]
                if any(k not in defaults[cls] for k in have):
                    raise _Fail(f"unknown keyword of nn.{cls}")
                if any(k not in have and defaults[cls][k] is None for k in order):
                    raise _Fail(f"a keyword of nn.{cls} without default is left out")
                parts = pos + [f"{k}={have.get(k, defaults[cls][k])}" for k in order]
                ln = f"{m.group(1)}{m.group(2)}({', '.join(parts)})"
            new.append(ln)
        out.append(new)
    return out, defaults


def _drop_defaults(line: str, defaults: dict) -> str:
    """A merged ``nn.C(...)`` line without the keywords left at their defaults."""
    m = _NN_LINE.match(line)
    if not m:
        return line
    pos, kws = _call_parts(m.group(4))
    d = defaults.get(m.group(3), {})
    parts = pos + [f"{k}={v}" for k, v in kws if d.get(k) is None or d[k] != v]
    return f"{m.group(1)}{m.group(2)}({', '.join(parts)})"


_OPEN, _CLOSE = "([{", ")]}"


def _top_level(text: str) -> tuple[int, int, list[int]] | None:
    """(first opener, its closer, the commas between them at depth one) of a line, skipping
    strings; ``None`` without brackets."""
    depth, quote, first, commas = 0, None, None, []
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "\"'":
            quote = ch
        elif ch in _OPEN:
            depth += 1
            if depth == 1 and first is None:
                first = i
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0 and first is not None:
                return first, i, commas
        elif ch == "," and depth == 1 and first is not None:
            commas.append(i)
    return None


def wrap_line(line: str, width: int = 99) -> list[str]:
    """A line too long for ``width`` with its outermost call's (or container's) items on
    their own lines: all on one if they fit, else one a line, nested ones wrapped again."""
    if len(line) <= width or _COMMENT in line:
        return [line]
    found = _top_level(line)
    if found is None:
        return [line]
    p, q, commas = found
    ind = re.match(r"\s*", line).group()
    if line[p + 1:p + 2] in ("[", "{") and _top_level(line[p + 1:q]) is not None and \
            _top_level(line[p + 1:q])[1] == q - p - 2:
        inner = _top_level(line[p + 1:q])
        p, q, commas = p + 1, q - 1, [p + 1 + c for c in inner[2]]
    items = [line[a + 1:b].strip() for a, b in zip([p] + commas, commas + [q])]
    items = [it for it in items if it]
    head, tail = line[:p + 1], line[q:]
    if len(items) == 1 and " for _ in range(" in items[0]:  # a comprehension: no comma
        return [head] + wrap_line(f"{ind}    {items[0]}", width) + [ind + tail]
    one = f"{ind}    {', '.join(items)},"
    if len(one) <= width:
        return [head, one, ind + tail]
    if not any(c in it for it in items for c in _OPEN):  # plain items: as many a line as fit
        out, cur = [head], ""
        for it in items:
            if cur and len(f"{ind}    {cur} {it},") > width:
                out.append(f"{ind}    {cur}")
                cur = ""
            cur = f"{cur} {it}," if cur else f"{it},"
        return out + [f"{ind}    {cur}", ind + tail]
    out = [head]
    for it in items:
        out += wrap_line(f"{ind}    {it},", width)
    return out + [ind + tail]


# ---- expressions of the arguments ----

def _find_expr(values: tuple, env: list[tuple[str, tuple]]) -> str | None:
    """The simplest expression over the variables ``env`` (name, value per specialization)
    that takes ``values`` in every specialization."""
    n = len(values)
    for name, vs in env:
        if vs == values:
            return name
    for i, (a, va) in enumerate(env):
        for b, vb in env:
            if a != b and all(va[j] * vb[j] == values[j] for j in range(n)) and \
                    (a, b) < (b, a):
                return f"{a} * {b}"
            if a != b and all(vb[j] and va[j] // vb[j] == values[j] for j in range(n)):
                return f"{a} // {b}"
    for name, vs in env:
        for k in range(2, 9):
            if all(k * vs[j] == values[j] for j in range(n)):
                return f"{k} * {name}"
            if all(vs[j] // k == values[j] and vs[j] % k == 0 for j in range(n)):
                return f"{name} // {k}"
    return None


def _merge_lines(lines: list[list[str]], env: list, comment_env: list, used: set,
                 variant: bool = False, params: frozenset = frozenset()) -> list[str]:
    """Lines that line up (one list per specialization) as one, their differing integers
    replaced by expressions; the variables the code uses are added to ``used``."""
    out = []
    for row in zip(*lines):
        code = [_split(ln)[0] for ln in row]
        comments = [_split(ln)[1] for ln in row]
        merged = _merge_text(code, env, used, in_code=True, variant=variant, params=params)
        if any(comments):
            if len({_INT.sub("#", c) for c in comments}) != 1:
                raise _Fail("comments differ")
            merged += _COMMENT + _merge_text(comments, comment_env, None, in_code=False)
        out.append(merged)
    return out


def _axis_of(text: str, at: int) -> tuple[int, int] | None:
    """(rank, axis) of the dim at offset ``at`` of a shape comment ``(N, 64, 56, 56)``."""
    lo, hi = text.rfind("(", 0, at), text.find(")", at)
    if lo < 0 or hi < 0 or ")" in text[lo:at]:
        return None
    return text[lo + 1:hi].count(",") + 1, text[lo + 1:at].count(",")


def _preferring(env: list, name: str | None) -> list:
    return sorted(env, key=lambda e: e[0] != name) if name else env


def _merge_text(texts: list[str], env: list, used: set | None, in_code: bool,
                variant: bool = False, params: frozenset = frozenset()) -> str:
    ints = [[(m.start(), m.end(), int(m.group())) for m in _INT.finditer(t)] for t in texts]
    first = texts[0]
    pieces, at = [], 0
    for k, (s, e, _) in enumerate(ints[0]):
        values = tuple(row[k][2] for row in ints)
        pieces.append(first[at:s])
        if not in_code:
            ax = _axis_of(first, s)
            env = _preferring(env, COMMENT_DIMS.get(ax[0], {}).get(ax[1]) if ax else None)
        same = [n for n, vs in env if vs == values]
        if len(set(values)) == 1 and variant and in_code and values[0] not in (0, 1) and \
                len(same) == 1:
            # a value constant within a variant, as one argument is there: that argument
            pieces.append(same[0])
            used.update(same)
        elif len(set(values)) == 1 and in_code and values[0] not in (0, 1) and \
                len(own := [n for n in same if n in params]) == 1:
            # a value every application shares that is one of the block's parameters: it
            pieces.append(own[0])
            used.update(own)
        elif len(set(values)) == 1:
            pieces.append(first[s:e])
        else:
            if in_code and (first[:s].rstrip().endswith("[") or s > 0 and first[s - 1] in "\"'"):
                raise _Fail("an index or a string differs")
            expr = _find_expr(values, env)
            if expr is None:
                if in_code:
                    raise _Fail(f"no expression takes the values {values}")
                expr = "?"
            elif used is not None:
                used.update(re.findall(r"[A-Za-z_]\w*", expr))
            if in_code and first[s - 1:s] in ("-", "*", "/", "%") or \
                    first[e:e + 2].strip().startswith(("*", "/", "%")):
                expr = f"({expr})" if " " in expr else expr
            pieces.append(expr)
        at = e
    pieces.append(first[at:])
    return "".join(pieces)


# ---- variants ----

def _predicate(env: list, in_a: list[bool]) -> str:
    """A test on the arguments, true on the specializations of variant A, false on B."""
    atoms = []
    b = [j for j, x in enumerate(in_a) if not x]
    a = [j for j, x in enumerate(in_a) if x]
    for i, (x, vx) in enumerate(env):
        if all(isinstance(vx[j], int) for j in b) and len({vx[j] for j in b}) == 1 and \
                vx[b[0]] in (0, 1):
            atoms.append((f"{x} != {vx[b[0]]}", lambda j, vx=vx, k=vx[b[0]]: vx[j] != k))
    for i, (x, vx) in enumerate(env):
        for y, vy in env[i + 1:]:
            if all(vx[j] == vy[j] for j in b):
                atoms.append((f"{y} != {x}", lambda j, vx=vx, vy=vy: vx[j] != vy[j]))
    if not atoms or not all(any(t(j) for _, t in atoms) for j in a):
        raise _Fail("no test separates the variants")
    return " or ".join(text for text, _ in atoms)


_MEMBER = re.compile(r"^\s*self\.(\w+) = ")


def _branch(cond: str, then: list[str], other: list[str], ind: str) -> list[str]:
    out = [f"{ind}if {cond}:"] + ["    " + ln for ln in then]
    if other:
        out += [f"{ind}else:"] + ["    " + ln for ln in other]
    return out


def _members(lines: list[str]) -> list[str]:
    return [m.group(1) for m in (_MEMBER.match(ln) for ln in lines) if m]


# ---- entry point ----

def generalize(bodies: list[str], params: list[dict], dims: list[list[tuple[str, int]]],
               comment_dims: list[list[tuple[str, int]]]):
    """Merge the class bodies of one block's specializations into one class body.

    ``params`` and ``dims`` give, per specialization, the block's parameter values and its
    inputs' static dims (``[("in_c", 64)]``), the candidate arguments; ``comment_dims`` the
    dims that may also name values in shape comments (``H``, ``W``). Returns ``(body,
    argument names, argument values per specialization)`` or ``None``.
    """
    try:
        return _generalize(bodies, params, dims, comment_dims)
    except (_Fail, ZeroDivisionError, ValueError):
        return None


def _usable(name: str) -> bool:
    """Whether a spec's parameter can be an argument as it is named: not a name the generated
    code uses itself (``F``, ``nn``, ``range``...) or a keyword."""
    return name.isidentifier() and name not in _HARD_RESERVED and name not in _BUILTINS and \
        name != "_"


def _env(params: list[dict], dims: list) -> list[tuple[str, tuple]]:
    # the spec's parameters first: where one takes the values, it names them
    names = [k for k, v in params[0].items() if type(v) is int and _usable(k)]
    names += [k for k, _ in dims[0]]
    env = []
    for name in names:
        vals = []
        for p, d in zip(params, dims):
            dd = dict(d)
            v = dd.get(name, p.get(name))
            if type(v) is not int:
                break
            vals.append(v)
        else:
            env.append((name, tuple(vals)))
    return env


def _sections(body: str) -> tuple[list[str], list[str], list[str]]:
    """(__init__ lines after super().__init__(), forward's def line, forward's body)."""
    lines = body.rstrip("\n").split("\n")
    try:
        i = lines.index("        super().__init__()")
        f = next(j for j, ln in enumerate(lines) if ln.startswith("    def forward("))
    except (ValueError, StopIteration):
        raise _Fail("unexpected layout")
    init = lines[i + 1:f]
    while init and not init[-1]:
        init.pop()
    # the parameter check goes: the arguments are real now
    if init and init[0].lstrip().startswith("_check_params("):
        if init[0].rstrip().endswith(")"):
            init = init[1:]
        else:
            end = init.index("        )")
            init = init[end + 1:]
    return init, [lines[f]], lines[f + 1:]


def _doc_lines(lines: list[str]) -> int:
    """How many of ``forward``'s first lines are its docstring."""
    if not lines or not lines[0].lstrip().startswith('"""'):
        return 0
    first = lines[0].strip()
    if len(first) >= 6 and first.endswith('"""'):
        return 1
    for k, ln in enumerate(lines[1:], 2):
        if ln.rstrip().endswith('"""'):
            return k
    raise _Fail("unterminated docstring")


def _merge_doc(docs: list[list[str]], env: list) -> list[str]:
    """Docstring lines with the values that differ named (the first body's where the lines
    do not line up)."""
    if len({len(d) for d in docs}) != 1 or \
            len({tuple(_INT.sub("#", ln) for ln in d) for d in docs}) != 1:
        return docs[0]
    return [_merge_text(list(row), env, None, in_code=False) for row in zip(*docs)]


def _generalize(bodies, params, dims, comment_dims, branches=True):
    """``branches=False`` (a model's class): one variant only, and only values that differ
    are named (a model's fixed parameter is no better a name for a number than the number)."""
    parts = [_sections(b) for b in bodies]
    if len({tuple(p[1]) for p in parts}) != 1:
        raise _Fail("forward signatures differ")
    inits, defaults = _normalize([p[0] for p in parts])
    ndoc = [_doc_lines(p[2]) for p in parts]
    fwds = [p[2][k:] for p, k in zip(parts, ndoc)]
    env = _env(params, dims)
    comment_env = env + [e for e in _env(params, comment_dims) if e[0] not in dict(env)]
    groups: dict[tuple, list[int]] = {}
    for j in range(len(bodies)):
        key = (tuple(map(_skeleton, inits[j])), tuple(map(_skeleton, fwds[j])))
        groups.setdefault(key, []).append(j)
    if len(groups) > (2 if branches else 1):
        raise _Fail("the bodies differ in their lines")
    used: set = set()
    own = frozenset(params[0]) if branches else frozenset()
    keys = list(groups)
    if len(keys) == 1:
        init = _merge_lines(inits, env, comment_env, used, params=own)
        fwd = _merge_lines(fwds, env, comment_env, used, params=own)
    else:
        init, fwd = _merge_variants(groups, keys, inits, fwds, env, comment_env, used, own)
    init = [w for ln in init for w in wrap_line(_drop_defaults(ln, defaults))]
    args = [k for k, _ in dims[0] if k in used] + \
        [name for name, _ in env if name in used and name not in dict(dims[0])]
    if any(re.search(rf"\b{a}\b", "\n".join(_split(ln)[0] for ln in fwd)) for a in args):
        raise _Fail("forward uses an argument")
    values = [[dict(env)[a][j] for a in args] for j in range(len(bodies))]
    doc = _merge_doc([p[2][:k] for p, k in zip(parts, ndoc)], comment_env)
    return init, doc + fwd, parts[0][1][0], args, values


def generalize_model(bodies: list[str], params: list[dict]):
    """Merge the model classes of one model compiled with different parameter values (a
    parameter changed in each): ``(__init__ lines, forward's def line, forward's lines, the
    parameters the merged code takes as arguments)``, or ``None`` where the classes differ in
    more than values that expressions of the parameters explain, or ``forward`` would need one.
    """
    try:
        init, fwd, fwd_def, args, _ = _generalize(bodies, params, [[]] * len(bodies),
                                                  [[]] * len(bodies), branches=False)
    except (_Fail, ZeroDivisionError, ValueError):
        return None
    return init, fwd_def, fwd, args


def param_variants(params: dict) -> dict:
    """For each integer parameter of a model, the values to compile it again with (in order,
    the first that compiles), for :func:`generalize_model` to see what it changes."""
    return {k: [v + 1, 2 * v] for k, v in params.items()
            if type(v) is int and _usable(k) and v > 0}


def _merge_variants(groups, keys, inits, fwds, env, comment_env, used, own):
    # variant A is the one with more members (the extra lines)
    ka, kb = sorted(keys, key=lambda k: -len(k[0]))
    ja, jb = groups[ka], groups[kb]
    in_a = [j in ja for j in range(len(inits))]

    def sub(env_, js):
        return [(n, tuple(v[j] for j in js)) for n, v in env_]

    cond = None
    out: list = []
    out_init_a: list = []
    out_init_b: list = []
    for section, (sa, sb) in enumerate([(ka[0], kb[0]), (ka[1], kb[1])]):
        rows_a = [inits[j] if section == 0 else fwds[j] for j in ja]
        rows_b = [inits[j] if section == 0 else fwds[j] for j in jb]
        sm = difflib.SequenceMatcher(a=list(sa), b=list(sb), autojunk=False)
        lines = []
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                rows = [r[i1:i2] for r in rows_a] + [r[j1:j2] for r in rows_b]
                order = ja + jb
                perm = sorted(range(len(order)), key=lambda k: order[k])
                lines += _merge_lines([rows[k] for k in perm], env, comment_env, used,
                                      params=own)
                continue
            la = _merge_lines([r[i1:i2] for r in rows_a], sub(env, ja), sub(comment_env, ja),
                              used, variant=True)
            lb = _merge_lines([r[j1:j2] for r in rows_b], sub(env, jb), sub(comment_env, jb),
                              used, variant=True)
            ind = "        "
            if section == 0:
                if cond is None:
                    cond = _predicate(env, in_a)
                    used.update(re.findall(r"[A-Za-z_]\w*", cond))
                ma, mb = _members(la), _members(lb)
                la = la + [f"{ind}self.{m} = None" for m in mb if m not in ma]
                lb = lb + [f"{ind}self.{m} = None" for m in ma if m not in mb]
                lines += _branch(cond, la, lb, ind)
            else:
                only_a = [m for m in _members(out_init_a) if m not in _members(out_init_b)]
                if not only_a:
                    raise _Fail("no member tells the variants apart")
                lines += _branch(f"self.{only_a[0]} is not None", la, lb, ind)
        if section == 0:
            out_init_a = [ln for j in ja[:1] for ln in inits[j]]
            out_init_b = [ln for j in jb[:1] for ln in inits[j]]
        out.append(lines)
    if cond is None:
        raise _Fail("variants differ only in forward")
    return out[0], out[1]
