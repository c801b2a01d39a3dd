"""Write the editor files of editors/vscode/ from the facts the Pygments lexer reads.

    python tools/make_tmlanguage.py           # (re)write the two files
    python tools/make_tmlanguage.py --check   # exit 1 and print a diff if either is stale

    editors/vscode/syntaxes/nndsl.tmLanguage.json   the TextMate grammar (VS Code, and any
                                                    editor that reads TextMate grammars)
    editors/vscode/language-configuration.json      comments, brackets, auto-closing pairs

The keywords and their kinds, the builtins, the dtypes and the operators are those of
``nndsl.editor.lexer.FACTS``, which reads them from the grammar and the library tables; the
number, name and comment patterns are the grammar's own regexes. What is chosen here is only
which TextMate scope each kind gets. The regexes stay within what Python's ``re`` and
Oniguruma (the engine of TextMate grammars) read alike: classes, groups, ``\\b``, ``$``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nndsl.editor.lexer import FACTS, Facts  # noqa: E402

GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "nndsl.tmLanguage.json"
CONFIG = ROOT / "editors" / "vscode" / "language-configuration.json"
SCOPE = "source.nndsl"

# the TextMate scope of each kind of token (a colouring choice: themes key on these names)
SCOPES = {
    "comment": "comment.line.number-sign.nndsl",
    "string": "string.quoted.double.nndsl",
    "escape": "constant.character.escape.nndsl",
    "definition": "storage.type.nndsl",
    "defined": "entity.name.function.nndsl",
    "import": "keyword.control.import.nndsl",
    "module": "entity.name.namespace.nndsl",
    "keyword": "keyword.control.nndsl",
    "word_operator": "keyword.operator.logical.nndsl",
    "constant": "constant.language.nndsl",
    "dtype": "support.type.nndsl",
    "builtin": "support.function.builtin.nndsl",
    "builtin_constant": "support.constant.nndsl",
    "number": "constant.numeric.nndsl",
    "operator": "keyword.operator.nndsl",
    "bracket": "punctuation.section.brackets.nndsl",
    "separator": "punctuation.separator.nndsl",
    "accessor": "punctuation.accessor.nndsl",
}


def _escape(text: str) -> str:
    """``text`` as a regex: only the characters both engines treat as special are escaped."""
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}-" else c for c in text)


def _words(words) -> str:
    """A regex matching any of ``words`` as a whole word (longest first)."""
    alts = "|".join(_escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))
    return rf"\b(?:{alts})\b"


def _alternatives(symbols) -> str:
    return "|".join(_escape(s) for s in sorted(symbols, key=lambda s: (-len(s), s)))


def _plain(rx: str) -> str:
    """A grammar regex with its newline characters written as ``\\n``, as editors expect."""
    return rx.replace("\n", r"\n").replace("\t", r"\t").replace("\r", r"\r")


def grammar(f: Facts = FACTS) -> dict:
    """The TextMate grammar as a JSON-ready dict (patterns are tried in order at each position,
    so keywords and builtins come before plain names, numbers before the `.` accessor)."""
    name = f.name
    opening = "".join(o for o, _ in f.brackets)
    closing = "".join(c for _, c in f.brackets)
    separators = [p for p in f.punctuation if p not in opening + closing + "."]
    named = [w for w in f.before_name if w.isidentifier() and w not in f.definitions]
    repo = {
        "comment": {"name": SCOPES["comment"], "match": _plain(f.comment)},
        # the grammar's STRING is one regex; begin/end reads the same strings (one line,
        # a backslash escapes the next character) and gives the escapes a scope of their own
        "string": {
            "name": SCOPES["string"], "begin": '"', "end": '"|$',
            "patterns": [{"name": SCOPES["escape"], "match": r"\\."}],
        },
        "definition": {
            "match": rf"({_words(f.definitions)})(?:\s+({name}))?",
            "captures": {"1": {"name": SCOPES["definition"]}, "2": {"name": SCOPES["defined"]}},
        },
        "import": {
            "match": rf"({_words(f.imports)})(?:\s+({name}(?:\.{name})*))?",
            "captures": {"1": {"name": SCOPES["import"]}, "2": {"name": SCOPES["module"]}},
        },
        # where the grammar takes nothing but a name (`as block`, `input output`, `x.input`),
        # a keyword is a name, as the parser's contextual lexer reads it (on one line here)
        "named": {
            "match": rf"({_words(named)}|{_escape('.')})\s*({name})",
            "captures": {"1": {"patterns": [{"include": "#keyword"},
                                            {"include": "#punctuation"}]}},
        },
        "keyword": {"patterns": [
            {"name": SCOPES["word_operator"], "match": _words(f.word_operators)},
            {"name": SCOPES["constant"], "match": _words(f.constants)},
            {"name": SCOPES["keyword"], "match": _words(f.other_keywords)},
        ]},
        "builtin": {"patterns": [
            {"name": SCOPES["dtype"], "match": _words(f.dtypes)},
            {"name": SCOPES["builtin_constant"], "match": _words(f.builtin_constants)},
            {"name": SCOPES["builtin"], "match": _words(f.layers + f.functions)},
        ]},
        "number": {"name": SCOPES["number"], "match": _plain(f.number)},
        # a plain name, consumed whole so that `x1` shows no number
        "name": {"match": name},
        "operator": {"name": SCOPES["operator"], "match": _alternatives(f.operators)},
        "punctuation": {"patterns": [
            {"name": SCOPES["bracket"], "match": _alternatives(opening + closing)},
            {"name": SCOPES["separator"], "match": _alternatives(separators)},
            {"name": SCOPES["accessor"], "match": _escape(".")},
        ]},
    }
    order = ["comment", "string", "definition", "import", "named", "keyword", "builtin", "number",
             "name",
             "operator", "punctuation"]
    return {
        "name": "nndsl",
        "scopeName": SCOPE,
        "fileTypes": [f.suffix.lstrip(".")],
        "comment": "Generated by tools/make_tmlanguage.py from nndsl.editor.lexer.FACTS "
                   "(the grammar and the library tables); do not edit by hand.",
        "patterns": [{"include": f"#{k}"} for k in order],
        "repository": repo,
    }


def language_configuration(f: Facts = FACTS) -> dict:
    """VS Code's language configuration: comments, brackets, pairs and indentation."""
    brackets = [list(b) for b in f.brackets]
    opening = _escape("".join(o for o, _ in f.brackets))
    closing = _escape("".join(c for _, c in f.brackets))
    comment = _escape(f.comment_start)
    return {
        "comments": {"lineComment": f.comment_start},
        "brackets": brackets,
        "autoClosingPairs": [{"open": o, "close": c} for o, c in f.brackets]
        + [{"open": '"', "close": '"', "notIn": ["string", "comment"]}],
        "autoCloseBefore": ";:.,=}])> \n\t",
        "surroundingPairs": brackets + [['"', '"']],
        "wordPattern": f.name,
        "indentationRules": {
            "increaseIndentPattern": rf"^.*[{opening}]\s*({comment}.*)?$",
            "decreaseIndentPattern": rf"^\s*[{closing}]",
        },
    }


def render(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    return {GRAMMAR: render(grammar()), CONFIG: render(language_configuration())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 with a diff if a written file differs from what would be written")
    args = ap.parse_args(argv)
    stale = 0
    for path, text in outputs().items():
        rel = path.relative_to(ROOT)
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if args.check:
            if old != text:
                stale += 1
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), f"{rel} (written)",
                    f"{rel} (from the lexer's facts)"))
            continue
        if old != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
        else:
            print(f"{rel} is up to date")
    if stale:
        print(f"{stale} file(s) out of date: run python tools/make_tmlanguage.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
