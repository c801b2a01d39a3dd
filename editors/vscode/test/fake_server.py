"""A stand-in language server for test_extension.js: it answers each request the extension
forwards with a fixed, recognisable result and records every message it gets, so the test can
check both directions without nndsl's real server. Framing written independently of lsp.js."""

import json
import sys

LOG = sys.argv[1] if len(sys.argv) > 1 else None
got = []


def read():
    headers = {}
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        line = line.decode("ascii").rstrip("\r\n")
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return json.loads(sys.stdin.buffer.read(int(headers["content-length"])).decode("utf-8"))


def send(msg):
    body = json.dumps(msg, ensure_ascii=False).encode("utf-8")
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sys.stdout.buffer.flush()


def rng(l0, c0, l1, c1):
    return {"start": {"line": l0, "character": c0}, "end": {"line": l1, "character": c1}}


RESULTS = {
    "textDocument/hover": {"contents": {"kind": "markdown", "value": "`x`: **f32[N, 4]**"},
                           "range": rng(1, 10, 1, 11)},
    "textDocument/definition": [{"uri": "file:///work/m.nn", "range": rng(1, 10, 1, 11)}],
    "textDocument/documentSymbol": [{
        "name": "m", "detail": "model", "kind": 12, "range": rng(0, 0, 3, 1),
        "selectionRange": rng(0, 6, 0, 7),
        "children": [{"name": "x", "kind": 13, "range": rng(1, 4, 1, 22),
                      "selectionRange": rng(1, 10, 1, 11)}]}],
    "textDocument/completion": {"isIncomplete": False, "items": [
        {"label": "linear", "kind": 3, "detail": "linear(x, out, bias=true)",
         "documentation": {"kind": "markdown", "value": "y = x Wᵀ + b"},
         "insertText": "linear(${1:out})", "insertTextFormat": 2},
        {"label": "x", "kind": 6, "textEdit": {"range": rng(2, 15, 2, 16), "newText": "x"}}]},
    "textDocument/inlayHint": [{"position": {"line": 2, "character": 22}, "label": ": f32[N, 2]",
                                "kind": 1, "paddingLeft": True}],
    "textDocument/formatting": [{"range": rng(0, 0, 0, 5), "newText": "model"}],
}


def main():
    while True:
        msg = read()
        if msg is None:
            break
        got.append(msg)
        method, mid = msg.get("method"), msg.get("id")
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": mid, "result": {
                "capabilities": {
                    "textDocumentSync": {"openClose": True, "change": 2,
                                         "save": {"includeText": False}},
                    "hoverProvider": True, "definitionProvider": True,
                    "documentSymbolProvider": True, "inlayHintProvider": True,
                    "completionProvider": {"triggerCharacters": ["."]},
                    "documentFormattingProvider": True},
                "serverInfo": {"name": "fake", "version": "0"}}})
        elif method == "textDocument/didOpen":
            doc = msg["params"]["textDocument"]
            send({"jsonrpc": "2.0", "method": "textDocument/publishDiagnostics", "params": {
                "uri": doc["uri"], "version": doc["version"], "diagnostics": [{
                    "range": rng(2, 4, 2, 9), "severity": 2, "code": "W0101", "source": "nndsl",
                    "message": "`h` is never used — ünïcode",
                    "relatedInformation": [{"location": {"uri": doc["uri"],
                                                         "range": rng(1, 4, 1, 9)},
                                            "message": "defined here"}]}]}})
            # a request of the server's own: the extension answers with its settings
            send({"jsonrpc": "2.0", "id": "cfg-1", "method": "workspace/configuration",
                  "params": {"items": [{"section": "nndsl.inlayHints.enabled"}]}})
            send({"jsonrpc": "2.0", "id": "odd-1", "method": "nndsl/unknown", "params": {}})
        elif method in RESULTS:
            send({"jsonrpc": "2.0", "id": mid, "result": RESULTS[method]})
        elif method == "shutdown":
            send({"jsonrpc": "2.0", "id": mid, "result": None})
        elif method == "exit":
            break
        elif mid is not None and method is None:
            pass   # a response to one of ours: recorded
        elif mid is not None:
            send({"jsonrpc": "2.0", "id": mid,
                  "error": {"code": -32601, "message": f"no {method}"}})
    if LOG:
        with open(LOG, "w", encoding="utf-8") as f:
            json.dump(got, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
