"""Applications of an ``nn.ModuleList``'s modules one after another, written as a ``for`` loop.

A ``forward`` that calls every module of a list in turn, each on the previous one's output::

    stem = self.stem(image)  # (N, 64, 56, 56)
    layers_0_b0 = self.layers[0]["b0"](stem)  # (N, 64, 56, 56)
    layers_0_b1 = self.layers[0]["b1"](layers_0_b0)  # (N, 64, 56, 56)
    layers_1_b0 = self.layers[1]["b0"](layers_0_b1)  # (N, 128, 28, 28)
    ...

becomes::

    x = self.stem(image)  # (N, 64, 56, 56)
    for layer in self.layers:
        x = layer["b0"](x)
        x = layer["b1"](x)

:func:`loop_lines` does it only where it computes the same: the lines are consecutive, every
element of the list is called, in order, the same calls each time, each call takes the
previous call's result first and otherwise only values from before the loop (the same each
time), and no result but the last is read after the loop (which reads the loop's variable).
A shape comment stays where every iteration has the same one.
"""

from __future__ import annotations

import re

_CALL_CODE = re.compile(r"^(\w+) = self\.(\w+)\[(\d+)\]((?:\[\"\w+\"\])*)\((.*)\)$")


class _Call:
    """``target = self.attr[index]access(args)  # comment``, parsed."""

    def __init__(self, m: re.Match, comment: str | None):
        self.groups = m.groups() + (comment,)

    def group(self, i: int):
        return self.groups[i - 1]


class _CALL:
    @staticmethod
    def match(line: str) -> _Call | None:
        code, sep, comment = line.partition("  # ")
        m = _CALL_CODE.match(code)
        return _Call(m, comment if sep else None) if m else None


def _args(text: str) -> list[str] | None:
    """The top-level comma-separated arguments of a call (``None`` if brackets or strings are
    not simple)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "\"'":
            return None
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _uses(line: str, name: str) -> bool:
    code = line.split("  # ", 1)[0]
    return re.search(rf"(?<![\w.]){re.escape(name)}\b", code) is not None


def _free(want: list[str], lines: list[str], taken: set) -> str | None:
    for w in want:
        if w not in taken and not any(_uses(ln, w) for ln in lines):
            return w
    return None


def loop_lines(lines: list[str], ret: str, lists: dict[str, int], taken: set) -> tuple:
    """``lines`` (one ``forward``'s, unindented) and the returned expression with the runs
    over a list written as loops; ``lists`` gives the length of each ``nn.ModuleList``
    attribute, ``taken`` the names the function may not reuse (its arguments)."""
    i = 0
    while i < len(lines):
        run = _run_at(lines, i, lists)
        if run is None:
            i += 1
            continue
        attr, n, k = run
        rewritten = _rewrite(lines, ret, i, attr, n, k, taken)
        if rewritten is None:
            i += 1
            continue
        lines, ret, i = rewritten
    return lines, ret


def _run_at(lines, i, lists):
    """(attribute, list length, calls per element) of a run starting at line ``i``."""
    m = _CALL.match(lines[i])
    if m is None or m.group(3) != "0" or m.group(2) not in lists:
        return None
    attr, n = m.group(2), lists[m.group(2)]
    k = 0
    while i + k < len(lines):
        mk = _CALL.match(lines[i + k])
        if mk is None or mk.group(2) != attr or mk.group(3) != "0":
            break
        k += 1
    if n < 2 or i + n * k > len(lines):
        return None
    return attr, n, k


def _rewrite(lines, ret, i, attr, n, k, taken):
    ms = [_CALL.match(lines[i + j]) for j in range(n * k)]
    if any(m is None for m in ms):
        return None
    targets = [m.group(1) for m in ms]
    inside = set(targets)
    steps, comments = [], []
    for j in range(k):
        col = [ms[it * k + j] for it in range(n)]
        if any(m.group(2) != attr or int(m.group(3)) != it for it, m in enumerate(col)) or \
                len({m.group(4) for m in col}) != 1:
            return None
        argss = [_args(m.group(5)) for m in col]
        if any(a is None or not a for a in argss) or len({tuple(a[1:]) for a in argss}) != 1:
            return None
        for it, a in enumerate(argss):
            prev = it * k + j - 1
            if it == 0 and j == 0:
                if any(_uses(a[0], t) for t in inside):
                    return None
            elif a[0] != targets[prev]:
                return None
        if any(_uses(x, t) for x in argss[0][1:] for t in inside):
            return None
        steps.append((col[0].group(4), argss[0][1:]))
        shown = {m.group(6) for m in col}
        comments.append(shown.pop() if len(shown) == 1 else None)
    after = lines[i + n * k:]
    last = targets[-1]
    if any(_uses(ln, t) for ln in after + [ret] for t in inside - {last}):
        return None
    every = lines + [ret]
    var = _free(["x", "h", "y", "out"], every, taken)
    elem = _free([attr[:-1] if attr.endswith("s") and len(attr) > 1 else "layer", "layer",
                  "block", "module"], every, taken | {var})
    if var is None or elem is None:
        return None
    first = _args(ms[0].group(5))[0]
    body = [f"{var} = {first}", f"for {elem} in self.{attr}:"]
    if i > 0 and lines[i - 1].startswith(f"{first} = ") and \
            not any(_uses(ln, first) for ln in after + [ret]):
        # the value the loop starts from is made just before it: make it in the loop's variable
        i -= 1
        body = [var + lines[i][len(first):], body[1]]
    for (access, extra), comment in zip(steps, comments):
        call = f"{var} = {elem}{access}({', '.join([var] + list(extra))})"
        body.append("    " + call + (f"  # {comment}" if comment else ""))

    def rename(ln: str) -> str:
        code, sep, comment = ln.partition("  # ")
        return re.sub(rf"(?<![\w.]){re.escape(last)}\b", var, code) + sep + comment
    new = lines[:i] + body + [rename(ln) for ln in after]
    return new, rename(ret), i + len(body)
