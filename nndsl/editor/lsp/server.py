"""The language server: :mod:`.analysis` behind the Language Server Protocol, over pygls.

Each open document is compiled as the file at its path, its unsaved text included, on one
worker thread: a change waits :data:`DEBOUNCE` seconds for the next keystroke, and a newer text
cancels the compilation of an older one (elaboration checks a flag at every expression it
evaluates). Diagnostics are published when a compilation ends. Hover, definition, symbols,
completion and inlay hints read the last analysis of the document whose text parsed, so they
answer at once and never compile.

Every handler is guarded: an exception in one is logged (``window/logMessage``) and the request
answers with nothing, so one bad request cannot stop the server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from nndsl import __version__
from nndsl.editor.lsp.analysis import INTERNAL, Analysis, Cancelled, analyze, completions
from nndsl.editor.lsp.positions import UTF8, UTF16, UTF32, Text

DEBOUNCE = 0.15          # seconds a change waits for the next one before it is compiled
WORKER_STACK = 64 << 20  # the compile thread's stack: deep specs recurse in places

log = logging.getLogger("nndsl.lsp")

_SEVERITY = {"error": types.DiagnosticSeverity.Error,
             "warning": types.DiagnosticSeverity.Warning}
_SYMBOL = {"model": types.SymbolKind.Class, "block": types.SymbolKind.Function,
           "train": types.SymbolKind.Event, "optimize": types.SymbolKind.Event,
           "search": types.SymbolKind.Event,
           "input": types.SymbolKind.Variable, "output": types.SymbolKind.Field}
_COMPLETION = {"function": types.CompletionItemKind.Function,
               "layer": types.CompletionItemKind.Class,
               "builtin": types.CompletionItemKind.Function,
               "dtype": types.CompletionItemKind.TypeParameter,
               "block": types.CompletionItemKind.Module,
               "model": types.CompletionItemKind.Module,
               "variable": types.CompletionItemKind.Variable,
               "keyword": types.CompletionItemKind.Keyword,
               "module": types.CompletionItemKind.Module}


class _Doc:
    """What the server holds for one open document."""

    def __init__(self):
        self.task: asyncio.Task | None = None
        self.cancel: threading.Event | None = None
        self.analysis: Analysis | None = None   # the last one
        self.good: Analysis | None = None       # the last one whose text parsed


class NndslServer(LanguageServer):
    def __init__(self):
        super().__init__("nndsl", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.docs: dict[str, _Doc] = {}
        self.inlay_hints_enabled = False
        self.debounce = DEBOUNCE
        old = threading.stack_size()
        try:
            threading.stack_size(WORKER_STACK)
            self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nndsl-compile")
            self.worker.submit(lambda: None).result()   # start the thread with that stack
        except (ValueError, RuntimeError):
            self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nndsl-compile")
        finally:
            try:
                threading.stack_size(old)
            except (ValueError, RuntimeError):
                pass

    # ---- helpers
    @property
    def encoding(self) -> str:
        try:
            enc = self.workspace.position_encoding
        except Exception:   # noqa: BLE001 - before initialize
            enc = None
        enc = str(getattr(enc, "value", enc) or UTF16)
        return enc if enc in (UTF8, UTF16, UTF32) else UTF16

    def log_error(self, what: str, exc: BaseException | None = None) -> None:
        text = what if exc is None else \
            f"{what}: {''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}"
        log.error(text)
        try:
            self.window_log_message(types.LogMessageParams(types.MessageType.Error, text))
        except Exception:   # noqa: BLE001 - the connection may be gone
            pass

    def doc_path(self, uri: str) -> str | None:
        if not uri.startswith("file:"):
            return None
        try:
            return to_fs_path(uri)
        except Exception:   # noqa: BLE001
            return None

    def analysis_for(self, uri: str) -> Analysis | None:
        st = self.docs.get(uri)
        return st.good if st is not None else None

    # ---- settings
    async def pull_configuration(self) -> None:
        """Read the ``nndsl`` section of the client's settings, if it has them."""
        caps = self.client_capabilities
        if not (caps and caps.workspace and caps.workspace.configuration):
            return
        try:
            got = await asyncio.wait_for(self.workspace_configuration_async(
                types.ConfigurationParams([types.ConfigurationItem(section="nndsl")])), 5)
        except Exception:   # noqa: BLE001 - a client that does not answer keeps the defaults
            return
        if got and isinstance(got[0], dict):
            v = _setting({"nndsl": got[0]})
            if v is not None:
                self.inlay_hints_enabled = v

    def refresh_inlay_hints(self) -> None:
        try:
            if self.client_capabilities.workspace.inlay_hint.refresh_support:
                self.workspace_inlay_hint_refresh(None)
        except AttributeError:
            pass

    # ---- compiling
    def schedule(self, uri: str, delay: float) -> None:
        st = self.docs.setdefault(uri, _Doc())
        if st.task is not None and not st.task.done():
            st.task.cancel()
        if st.cancel is not None:
            st.cancel.set()
        st.cancel = event = threading.Event()
        st.task = asyncio.ensure_future(self._compile_later(uri, st, delay, event))

    async def _compile_later(self, uri: str, st: _Doc, delay: float,
                             event: threading.Event) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            doc = self.workspace.get_text_document(uri)
            text, version = doc.source, doc.version
            path = self.doc_path(uri)
            loop = asyncio.get_running_loop()
            try:
                a = await loop.run_in_executor(self.worker, functools.partial(
                    analyze, text, path, cancel=event))
            except Cancelled:
                return
            if event.is_set() or st is not self.docs.get(uri):
                return
            st.analysis = a
            if a.ok:
                st.good = a
            for d in a.diagnostics:
                if d.code == INTERNAL:
                    self.log_error(f"{uri}: {d.message}")
            self.publish(uri, a, version)
        except asyncio.CancelledError:
            pass
        except Exception as e:   # noqa: BLE001
            self.log_error(f"compiling {uri} failed", e)

    def publish(self, uri: str, a: Analysis, version) -> None:
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri, [self.diagnostic(a, d) for d in a.diagnostics], version))

    def diagnostic(self, a: Analysis, d) -> types.Diagnostic:
        enc = self.encoding
        rng = self.range(a.index, d.span, enc) if d.span is not None else \
            types.Range(types.Position(0, 0), types.Position(0, 0))
        related = []
        for text, span in d.related:
            loc = self.location(a, span, None, enc)
            if loc is not None:
                related.append(types.DiagnosticRelatedInformation(loc, text))
        return types.Diagnostic(rng, d.message, severity=_SEVERITY[d.severity], code=d.code,
                                source="nndsl", related_information=related or None,
                                tags=[types.DiagnosticTag.Unnecessary] if d.unnecessary
                                else None)

    @staticmethod
    def range(index: Text, span, enc: str) -> types.Range:
        (l0, c0), (l1, c1) = index.span_range(span, enc)
        return types.Range(types.Position(l0, c0), types.Position(l1, c1))

    def location(self, a: Analysis, span, text: str | None, enc: str
                 ) -> types.Location | None:
        """An LSP location for ``span`` (in this document or any file it reads)."""
        from pathlib import Path

        from nndsl.editor.lsp.analysis import file_of
        if span.file == a.file:
            path, index = a.path, a.index
        else:
            path = file_of(span.file, a.base)
            src = text if text is not None else (span.source.text if span.source is not None
                                                  else None)
            index = Text(src) if src is not None else None
        if path is None:
            return None
        uri = Path(path).absolute().as_uri()
        if index is None:
            return types.Location(uri, types.Range(types.Position(0, 0), types.Position(0, 0)))
        return types.Location(uri, self.range(index, span, enc))



def _guarded(default=None):
    """A handler that logs its exceptions and answers ``default`` instead of failing."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(ls, params):
            try:
                return fn(ls, params)
            except Exception as e:   # noqa: BLE001
                ls.log_error(f"{fn.__name__} failed", e)
                return default
        return run
    return wrap


def _async_guarded(fn):
    @functools.wraps(fn)
    async def run(ls, params):
        try:
            return await fn(ls, params)
        except Exception as e:   # noqa: BLE001
            ls.log_error(f"{fn.__name__} failed", e)
            return None
    return run


def _setting(options, default=None):
    """``inlayHints`` of initialization options or settings: ``{"inlayHints": true}`` or
    ``{"nndsl": {"inlayHints": true}}`` (also ``{"inlayHints": {"enabled": true}}``)."""
    if not isinstance(options, dict):
        return default
    if isinstance(options.get("nndsl"), dict):
        options = options["nndsl"]
    v = options.get("inlayHints", default)
    if isinstance(v, dict):
        v = v.get("enabled", default)
    return bool(v) if isinstance(v, bool) else default


def build() -> NndslServer:
    ls_ = NndslServer()

    @ls_.feature(types.INITIALIZE)
    @_guarded()
    def initialize(ls: NndslServer, params: types.InitializeParams):
        v = _setting(params.initialization_options)
        if v is not None:
            ls.inlay_hints_enabled = v

    @ls_.feature(types.INITIALIZED)
    @_async_guarded
    async def initialized(ls: NndslServer, params):
        await ls.pull_configuration()

    @ls_.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    @_async_guarded
    async def did_change_configuration(ls: NndslServer,
                                       params: types.DidChangeConfigurationParams):
        before = ls.inlay_hints_enabled
        v = _setting(params.settings)
        if v is not None:
            ls.inlay_hints_enabled = v
        else:
            await ls.pull_configuration()
        if ls.inlay_hints_enabled != before:
            ls.refresh_inlay_hints()

    @ls_.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @_guarded()
    def did_open(ls: NndslServer, params: types.DidOpenTextDocumentParams):
        ls.schedule(params.text_document.uri, 0)

    @ls_.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @_guarded()
    def did_change(ls: NndslServer, params: types.DidChangeTextDocumentParams):
        ls.schedule(params.text_document.uri, ls.debounce)

    @ls_.feature(types.TEXT_DOCUMENT_DID_SAVE)
    @_guarded()
    def did_save(ls: NndslServer, params: types.DidSaveTextDocumentParams):
        ls.schedule(params.text_document.uri, 0)   # files it imports may have changed

    @ls_.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @_guarded()
    def did_close(ls: NndslServer, params: types.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        st = ls.docs.pop(uri, None)
        if st is not None:
            if st.task is not None:
                st.task.cancel()
            if st.cancel is not None:
                st.cancel.set()
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri, []))

    @ls_.feature(types.TEXT_DOCUMENT_HOVER)
    @_guarded()
    def hover(ls: NndslServer, params: types.HoverParams):
        a = ls.analysis_for(params.text_document.uri)
        if a is None:
            return None
        enc = ls.encoding
        off = a.index.lsp_offset(params.position.line, params.position.character, enc)
        found = a.hover(off)
        if found is None:
            return None
        text, (start, end) = found
        (l0, c0), (l1, c1) = a.index.lsp_position(start, enc), a.index.lsp_position(end, enc)
        kind = types.MarkupKind.Markdown
        try:
            formats = ls.client_capabilities.text_document.hover.content_format
            if formats and types.MarkupKind.Markdown not in formats:
                kind = types.MarkupKind.PlainText
        except AttributeError:
            pass
        return types.Hover(types.MarkupContent(kind, text),
                           types.Range(types.Position(l0, c0), types.Position(l1, c1)))

    @ls_.feature(types.TEXT_DOCUMENT_DEFINITION)
    @_guarded()
    def definition(ls: NndslServer, params: types.DefinitionParams):
        a = ls.analysis_for(params.text_document.uri)
        if a is None:
            return None
        enc = ls.encoding
        off = a.index.lsp_offset(params.position.line, params.position.character, enc)
        loc = a.definition(off)
        if loc is None:
            return None
        if loc.span is None:
            from pathlib import Path
            return types.Location(Path(loc.path).absolute().as_uri(), types.Range(
                types.Position(0, 0), types.Position(0, 0)))
        return ls.location(a, loc.span, loc.text, enc)

    @ls_.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guarded(default=[])
    def document_symbol(ls: NndslServer, params: types.DocumentSymbolParams):
        a = ls.analysis_for(params.text_document.uri)
        if a is None:
            return []
        enc = ls.encoding

        def one(s):
            rng = ls.range(a.index, s.span, enc)
            sel = ls.range(a.index, s.selection, enc)
            return types.DocumentSymbol(s.name, _SYMBOL.get(s.kind, types.SymbolKind.Object),
                                        rng, sel, detail=s.detail or None,
                                        children=[one(c) for c in s.children] or None)
        return [one(s) for s in a.symbols()]

    @ls_.feature(types.TEXT_DOCUMENT_COMPLETION,
                 types.CompletionOptions(trigger_characters=["."]))
    @_guarded()
    def completion(ls: NndslServer, params: types.CompletionParams):
        uri = params.text_document.uri
        doc = ls.workspace.get_text_document(uri)
        lines = doc.lines
        line = lines[params.position.line] if params.position.line < len(lines) else ""
        text = Text(line)
        cut = text.lsp_offset(0, params.position.character, ls.encoding)
        prefix = line[:cut]
        a = ls.analysis_for(uri)
        offset = None
        if a is not None:
            offset = a.index.lsp_offset(params.position.line, params.position.character,
                                        ls.encoding)
        snippets = markdown = False
        try:
            item_caps = ls.client_capabilities.text_document.completion.completion_item
            snippets = bool(item_caps.snippet_support)
            markdown = types.MarkupKind.Markdown in (item_caps.documentation_format or ())
        except AttributeError:
            pass
        items = []
        for c in completions(prefix, a, offset):
            item = types.CompletionItem(c.label, kind=_COMPLETION.get(c.kind),
                                        detail=c.detail or None,
                                        documentation=(types.MarkupContent(
                                            types.MarkupKind.Markdown, c.doc) if markdown
                                            else c.doc) if c.doc else None)
            if c.snippet and snippets and c.snippet != c.label:
                item.insert_text = c.snippet
                item.insert_text_format = types.InsertTextFormat.Snippet
            items.append(item)
        return types.CompletionList(is_incomplete=False, items=items)

    @ls_.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    @_guarded(default=[])
    def inlay_hint(ls: NndslServer, params: types.InlayHintParams):
        if not ls.inlay_hints_enabled:
            return []
        a = ls.analysis_for(params.text_document.uri)
        if a is None:
            return []
        enc = ls.encoding
        r = params.range
        start = a.index.lsp_offset(r.start.line, r.start.character, enc)
        end = a.index.lsp_offset(r.end.line, r.end.character, enc)
        out = []
        for h in a.inlay_hints(start, end):
            line, char = a.index.lsp_position(h.offset, enc)
            out.append(types.InlayHint(types.Position(line, char), h.label,
                                       kind=types.InlayHintKind.Type, padding_left=False))
        return out

    return ls_
