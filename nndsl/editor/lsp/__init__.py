"""``nndsl lsp``: the language server (diagnostics, hover, definition, symbols, completion,
inlay hints) over stdio. :mod:`.analysis` is the part without LSP in it; :mod:`.server` wires
it to pygls, which is needed only to run the server (``pip install "nndsl[lsp]"``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the language server on stdin/stdout until the client ends the session (``argv``:
    the arguments after ``nndsl lsp``; None reads ``sys.argv``). Returns the exit status: 0
    when the session ends with ``shutdown`` and ``exit`` or the input ends, 1 on ``exit``
    without ``shutdown``, 2 when pygls is not installed (one line on stderr says how to
    install it) or the arguments are wrong."""
    import argparse
    parser = argparse.ArgumentParser(prog="nndsl lsp", description="the nndsl language "
                                     "server, over stdio")
    parser.add_argument("--stdio", action="store_true",
                        help="talk over stdin/stdout (the default and only transport)")
    parser.add_argument("--log-file", help="write the server's log to this file")
    try:
        args = parser.parse_args(list(argv) if argv is not None else sys.argv[1:])
    except SystemExit as e:
        return int(e.code or 0) and 2
    import importlib
    try:
        for m in ("lsprotocol.types", "pygls.lsp.server"):
            importlib.import_module(m)
    except ImportError:
        print('error: the language server needs pygls: pip install "nndsl[lsp]"',
              file=sys.stderr)
        return 2
    import logging
    if args.log_file:
        logging.basicConfig(filename=args.log_file, level=logging.INFO)
    from nndsl.editor.lsp.server import build
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr   # stdout carries the protocol: a stray print must not reach it
    try:
        build().start_io(stdin, stdout)
    except SystemExit as e:   # the client's `exit`: 0 after `shutdown`, 1 without
        return e.code if isinstance(e.code, int) else 0
    finally:
        sys.stdout = sys.__stdout__
    return 0
