"""The Pygments lexer of ``.nn`` specs: ``pygmentize -l nndsl spec.nn``.

Every word list and token pattern is read at import time from where the language defines it,
so the lexer never drifts from the compiler:

    keywords        the grammar's keyword terminals (``nndsl/grammars/nndsl.lark``, through
                    the parser's lark object); what kind each is comes from the rules it
                    appears in (see :func:`_keyword_kinds`)
    builtins        the layers and functions of ``nndsl.elab.library`` and the compile-time
                    builtins of ``nndsl.elab.builtins`` (functions, dtypes, ``inf``/``pi``)
    numbers, names, strings, comments, whitespace
                    the grammar's terminals ``NUMBER``, ``NAME``, ``STRING``, ``COMMENT``, ``WS``
    operators       every other literal terminal of the grammar
    contexts        where the grammar takes only a name, and which keywords only statements
                    or the top level use (:func:`_contexts`): the parser's lexer is
                    contextual, so ``x |> f as block`` names a value ``block``, and the lexer
                    reads it so too (:meth:`NndslLexer.get_tokens_unprocessed`)

:data:`FACTS` holds them; ``tools/make_tmlanguage.py`` writes the TextMate grammar of
``editors/vscode/`` from the same object. A character the grammar does not accept (a tab is
accepted, a non-breaking space is not) is an ``Error`` token, as the parser would refuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pygments.lexer import RegexLexer
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from nndsl.elab.builtins import BUILTINS
from nndsl.elab.library import FUNCTIONS, LAYERS
from nndsl.elab.values import Builtin, DType
from nndsl.syntax.parser import SPEC_SUFFIX, _lark

__all__ = ["NndslLexer", "FACTS", "Facts"]

# Which literal terminals are punctuation rather than operators: a choice of how to colour
# them, not a fact of the grammar (every terminal here must also be one of the grammar's).
_PUNCTUATION = frozenset("()[]{},:.")


@dataclass(frozen=True)
class Facts:
    """What the language says about its tokens, for the lexer and the TextMate grammar."""

    keywords: tuple[str, ...]        # every keyword of the grammar
    definitions: tuple[str, ...]     # keywords followed by the name they define (model, block...)
    imports: tuple[str, ...]         # keywords followed by a module path or a file string
    constants: tuple[str, ...]       # keywords that are a value alone (true, false, none)
    word_operators: tuple[str, ...]  # keywords that are operators (and, or, not)
    other_keywords: tuple[str, ...]  # the rest (input, for, if, ...)
    statements: tuple[str, ...]      # keywords only statements use (input, return, for...)
    before_name: tuple[str, ...]     # tokens the grammar follows by nothing but a name (as, .)
    layers: tuple[str, ...]          # built-in layers (with weights)
    functions: tuple[str, ...]       # built-in functions and compile-time builtins
    dtypes: tuple[str, ...]          # element types (f32, i64, bool...)
    builtin_constants: tuple[str, ...]   # named numbers (inf, pi)
    operators: tuple[str, ...]       # operator spellings, longest first
    punctuation: tuple[str, ...]     # brackets, commas, colons, dots
    name: str                        # regexes of the grammar's terminals
    number: str
    string: str
    comment: str
    whitespace: str
    suffix: str                      # the file name suffix of a spec

    @property
    def brackets(self) -> tuple[tuple[str, str], ...]:
        return tuple((o, c) for o, c in (("(", ")"), ("[", "]"), ("{", "}"))
                     if o in self.punctuation and c in self.punctuation)

    @property
    def comment_start(self) -> str:
        """The text that starts a line comment (the comment terminal's fixed prefix)."""
        m = re.match(r"(?:\\.|[^\\\[\](){}*+?.|^$])+", self.comment)
        if m is None:
            raise ValueError(f"cannot tell how a comment starts from {self.comment!r}")
        return re.sub(r"\\(.)", r"\1", m.group(0))


def _literal_alternatives(regexp: str) -> tuple[str, ...] | None:
    """The strings a regex of literal alternatives (``(?:==|!=|<)``) matches, or None when it is
    any other regex (a character class, a repetition...)."""
    body = regexp[3:-1] if regexp.startswith("(?:") and regexp.endswith(")") else regexp
    out, cur, i = [], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            if body[i + 1].isalnum():   # \d, \w, \b...: a class, not a character
                return None
            cur.append(body[i + 1])
            i += 2
            continue
        if c == "|":
            out.append("".join(cur))
            cur = []
        elif c in "[](){}*+?.^$":
            return None
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    if not all(out) or not all(re.fullmatch(regexp, s) for s in out):
        return None
    return tuple(out)


def _keyword_kinds(lark, keywords: dict[str, str]) -> dict[str, str]:
    """Each keyword's kind, read from the rules of the grammar: a keyword that starts a ``*_def``
    rule and is followed by a NAME introduces a definition; one followed by ``dotted_name`` an
    import; a rule of that keyword alone is a constant; a keyword of a rule aliased ``*_op`` is
    an operator; any other keyword is ``keyword``."""
    by_terminal = {term: word for word, term in keywords.items()}
    kinds: dict[str, str] = {}
    for rule in lark.rules:
        names = [s.name for s in rule.expansion]
        alias = rule.alias or ""
        for i, n in enumerate(names):
            word = by_terminal.get(n)
            if word is None:
                continue
            nxt = names[i + 1] if i + 1 < len(names) else None
            if i == 0 and rule.origin.name.endswith("_def") and nxt == "NAME":
                kind = "definition"
            elif i == 0 and nxt == "dotted_name":
                kind = "import"
            elif len(names) == 1:
                kind = "constant"
            elif alias.endswith("_op"):
                kind = "word_operator"
            else:
                continue
            kinds.setdefault(word, kind)
    return {w: kinds.get(w, "keyword") for w in keywords}


def _contexts(lark, spelling: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keywords only statements use (every rule they appear in is one of ``_stmt``), and the
    tokens every rule follows by a NAME (``as``, ``.``, ``input``...), by their spellings. The
    parser's lexer is contextual: where only a name can come, ``block`` or ``output`` is a name
    (``x |> dense_block(n) as block``), and so it is here."""
    origins: dict[str, set] = {}
    after: dict[str, set] = {}
    kinds = {r.expansion[0].name for r in lark.rules if r.origin.name == "_stmt" and r.expansion}
    for rule in lark.rules:
        names = [s.name for s in rule.expansion]
        for i, n in enumerate(names):
            origins.setdefault(n, set()).add(rule.origin.name)
            after.setdefault(n, set()).add(names[i + 1] if i + 1 < len(names) else None)
    statements = sorted(w for t, w in spelling.items() if w.isidentifier()
                        and origins.get(t, {""}) <= kinds)
    before = sorted(w for t, w in spelling.items() if after.get(t) == {"NAME"})
    return tuple(statements), tuple(before)


def _facts() -> Facts:
    from lark.lexer import PatternStr
    lark = _lark()
    terminals = {t.name: t.pattern for t in lark.terminals}
    keywords: dict[str, str] = {}   # word -> terminal name
    symbols: set[str] = set()
    for name, pattern in terminals.items():
        if isinstance(pattern, PatternStr):
            if pattern.value.isidentifier():
                keywords[pattern.value] = name
            else:
                symbols.add(pattern.value)
        else:
            symbols.update(_literal_alternatives(pattern.to_regexp()) or ())
    kinds = _keyword_kinds(lark, keywords)
    spelling = {t: p.value for t, p in terminals.items() if isinstance(p, PatternStr)}
    statements, before_name = _contexts(lark, spelling)

    def kind(k: str) -> tuple[str, ...]:
        return tuple(sorted(w for w, v in kinds.items() if v == k))

    unknown = _PUNCTUATION - symbols
    if unknown:
        raise RuntimeError(f"the lexer's punctuation {sorted(unknown)} is not in the grammar")
    # a spec may name its own blocks like a builtin: the lexer colours the builtin's name
    dtypes = tuple(sorted(k for k, v in BUILTINS.items() if isinstance(v, DType)))
    functions = sorted(set(FUNCTIONS) | {k for k, v in BUILTINS.items() if isinstance(v, Builtin)})
    consts = sorted(k for k, v in BUILTINS.items() if isinstance(v, (int, float)))
    return Facts(
        keywords=tuple(sorted(keywords)),
        definitions=kind("definition"), imports=kind("import"), constants=kind("constant"),
        word_operators=kind("word_operator"), other_keywords=kind("keyword"),
        statements=statements, before_name=before_name,
        layers=tuple(sorted(set(LAYERS) - set(dtypes))),
        functions=tuple(f for f in functions if f not in dtypes and f not in LAYERS),
        dtypes=dtypes, builtin_constants=tuple(consts),
        operators=tuple(sorted(symbols - _PUNCTUATION, key=lambda s: (-len(s), s))),
        punctuation=tuple(sorted(_PUNCTUATION)),
        name=_regexp(terminals["NAME"]), number=_regexp(terminals["NUMBER"]),
        string=_regexp(terminals["STRING"]), comment=_regexp(terminals["COMMENT"]),
        whitespace=_regexp(terminals["WS"]), suffix=SPEC_SUFFIX)


def _regexp(pattern) -> str:
    """A terminal's regex (lark reads the grammar's escapes: ``\\n`` is a newline character
    here), wrapped with its flags when it has any."""
    return pattern.to_regexp() if pattern.flags else pattern.value


FACTS = _facts()


def _word_types(f: Facts) -> dict[str, object]:
    table: dict[str, object] = {}
    for words, token in ((f.layers, Name.Builtin), (f.functions, Name.Builtin),
                         (f.builtin_constants, Name.Constant), (f.dtypes, Keyword.Type),
                         (f.other_keywords, Keyword), (f.constants, Keyword.Constant),
                         (f.word_operators, Operator.Word), (f.imports, Keyword.Namespace),
                         (f.definitions, Keyword.Declaration)):
        table.update(dict.fromkeys(words, token))   # later rows win: keywords over builtins
    return table


_WORDS = _word_types(FACTS)
_ESCAPE = re.compile(r"\\.")


def _name(lexer, match):
    word = match.group(0)
    token = _WORDS.get(word, Name)
    yield match.start(), token, word


def _number(lexer, match):
    text = match.group(0)
    float_ = any(c in text for c in ".eE")
    yield match.start(), Number.Float if float_ else Number.Integer, text


def _string(lexer, match):
    """A string literal, its escapes (``\\"``, ``\\n``...) as ``String.Escape``."""
    text, start, pos = match.group(0), match.start(), 0
    for m in _ESCAPE.finditer(text):
        if m.start() > pos:
            yield start + pos, String.Double, text[pos:m.start()]
        yield start + m.start(), String.Escape, m.group(0)
        pos = m.end()
    if pos < len(text):
        yield start + pos, String.Double, text[pos:]


def _words(words) -> str:
    return "(" + "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w))) + ")"


_NAME = re.compile(FACTS.name)
_KEYWORDS = frozenset(FACTS.keywords)
_TOP_LEVEL = frozenset(FACTS.definitions + FACTS.imports)   # only between definitions
_STATEMENTS = frozenset(FACTS.statements)
_BEFORE_NAME = frozenset(FACTS.before_name)
# after an operator or one of these, an expression goes on: no statement starts there
_INSIDE_EXPRESSION = frozenset("([,")
_OPENERS = frozenset(o for o, _ in FACTS.brackets)
_CLOSERS = frozenset(c for _, c in FACTS.brackets)
_WORD_TYPES = frozenset(_WORDS.values()) | {Name}
_DEFINITION = re.compile(r"^%s\s+%s\s*[({]" % (_words(FACTS.definitions), FACTS.name), re.M)


class NndslLexer(RegexLexer):
    """The ``.nn`` language of nndsl: models, blocks, train and optimize sections."""

    name = "nndsl"
    aliases = ["nndsl", "nn"]
    filenames = ["*" + FACTS.suffix]
    mimetypes = ["text/x-nndsl"]

    tokens = {
        "root": [
            (r"\A\ufeff", Text),   # a byte-order mark, which the parser skips too
            (FACTS.whitespace, Whitespace),
            (FACTS.comment, Comment.Single),
            (FACTS.string, _string),
            (FACTS.number, _number),
            (FACTS.name, _name),
            (_words(FACTS.operators), Operator),
            (_words(FACTS.punctuation), Punctuation),
        ],
    }

    def get_tokens_unprocessed(self, text, stack=("root",)):
        """The tokens of the regex rules, each word then typed by where it stands, as the
        parser's contextual lexer would: a keyword where only a name may come is a name; the
        name after ``model``/``block``/``train``/``optimize`` is a function name; the module
        path after ``import`` a namespace."""
        depth = 0              # brackets open
        prev = (None, None)    # type and text of the last token that is not trivia
        in_path = False
        for pos, ttype, value in super().get_tokens_unprocessed(text, stack):
            if ttype in Whitespace or ttype in Comment or ttype is Text:
                yield pos, ttype, value
                continue
            ptype, pvalue = prev
            after_name_only = pvalue in _BEFORE_NAME and ptype not in Name
            word = ttype in _WORD_TYPES and _NAME.fullmatch(value) is not None
            if word and value in _KEYWORDS:
                if (after_name_only or (value in _TOP_LEVEL and depth > 0)
                        or (value in _STATEMENTS and (ptype in Operator
                                                      or pvalue in _INSIDE_EXPRESSION))):
                    ttype = Name
            if in_path and ((value == "." and pvalue != ".") or (word and pvalue == ".")):
                ttype = Name.Namespace
            else:
                in_path = ptype is Keyword.Namespace and word and ttype in Name
                if in_path:
                    ttype = Name.Namespace
                elif word and ttype in Name and after_name_only:
                    ttype = Name.Function if ptype is Keyword.Declaration else Name
            if ttype is Punctuation:
                depth += value in _OPENERS
                depth -= value in _CLOSERS and depth > 0
            prev = (ttype, value)
            yield pos, ttype, value

    def analyse_text(text):
        """A likely spec: a line that starts with a definition, ``model NAME(``, ``train NAME {``..."""
        return 0.3 if _DEFINITION.search(text) else 0.0
