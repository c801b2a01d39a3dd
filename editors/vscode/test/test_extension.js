// Checks the extension without VS Code: the framing of lsp.js on bytes cut anywhere, then
// extension.js against a stand-in `vscode` module and a stand-in server (fake_server.py).
//
//   node test/test_extension.js PYTHON LOG_FILE
//   node test/test_extension.js --server COMMAND ARGS...   # a smoke run against a real server
//
// Exits 0 when every check passes; tests/test_lexer.py runs the first form.
"use strict";

const assert = require("assert");
const path = require("path");
const fs = require("fs");
const Module = require("module");
const {PassThrough} = require("stream");

const HERE = __dirname;
const ROOT = path.dirname(HERE);
const [python, logFile] = process.argv.slice(2);

// ---- lsp.js on its own ----------------------------------------------------------------------

function framing() {
  const {encode, MessageParser, Connection} = require(path.join(ROOT, "lsp.js"));
  const messages = [{jsonrpc: "2.0", id: 1, method: "a", params: {text: "ünïcode ✓ 😀"}},
                    {jsonrpc: "2.0", method: "b", params: null},
                    {jsonrpc: "2.0", id: 2, result: [1, 2, 3]}];
  const bytes = Buffer.concat(messages.map(encode));
  assert.strictEqual(encode(messages[0]).toString("ascii", 0, 16), "Content-Length: ");
  for (const size of [1, 2, 3, 7, 64, bytes.length]) {   // chunks cut inside headers and UTF-8
    const got = [];
    const p = new MessageParser((m) => got.push(m), (e) => { throw e; });
    for (let i = 0; i < bytes.length; i += size) { p.feed(bytes.subarray(i, i + size)); }
    assert.deepStrictEqual(got, messages, `chunks of ${size} bytes`);
  }
  // other headers are allowed, the header name is case-insensitive; a broken message is skipped
  const errors = [];
  const got = [];
  const p = new MessageParser((m) => got.push(m), (e) => errors.push(e.message));
  const body = Buffer.from('{"jsonrpc":"2.0","method":"c"}', "utf8");
  p.feed(Buffer.from("Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n" +
                     `content-length: ${body.length}\r\n\r\n`, "ascii"));
  p.feed(body);
  p.feed(Buffer.from("Content-Length: 5\r\n\r\n{oops", "ascii"));
  p.feed(encode({jsonrpc: "2.0", method: "d"}));
  assert.deepStrictEqual(got.map((m) => m.method), ["c", "d"]);
  assert.strictEqual(errors.length, 1);

  // a connection: requests get their responses, unknown requests an error, cancellation a notice
  const toServer = new PassThrough();
  const fromServer = new PassThrough();
  const c = new Connection(fromServer, toServer);
  const sent = [];
  const seen = new MessageParser((m) => sent.push(m));
  toServer.on("data", (d) => seen.feed(d));
  let cancel = null;
  const token = {onCancellationRequested: (f) => { cancel = f; }};
  const answered = c.request("x/y", {q: 1}, token);
  const failed = c.request("x/z", null);
  fromServer.write(encode({jsonrpc: "2.0", id: 1, result: {ok: true}}));
  fromServer.write(encode({jsonrpc: "2.0", id: 2, error: {code: -32800, message: "cancelled"}}));
  fromServer.write(encode({jsonrpc: "2.0", id: 7, method: "server/asks", params: {}}));
  return Promise.all([answered, failed.then(() => assert.fail("no error"), (e) => e)])
    .then(([ok, err]) => {
      assert.deepStrictEqual(ok, {ok: true});
      assert.strictEqual(err.cancelled, true);
      cancel();   // after the response: nothing more is sent
      return new Promise((resolve) => setImmediate(resolve));
    })
    .then(() => {
      assert.deepStrictEqual(sent.map((m) => m.method || m.error.code),
                             ["x/y", "x/z", -32601]);
      assert.strictEqual(sent[2].id, 7);
    });
}

// ---- a stand-in for the `vscode` module -------------------------------------------------------

function fakeVscode(config) {
  const listeners = {};
  const providers = {};
  const diagnostics = new Map();
  const lines = [];
  const on = (name) => (f) => {
    (listeners[name] = listeners[name] || []).push(f);
    return {dispose: () => { listeners[name] = listeners[name].filter((g) => g !== f); }};
  };
  const register = (name) => (selector, provider, ...rest) => {
    providers[name] = {selector, provider, rest};
    return {dispose: () => { delete providers[name]; }};
  };
  class Position { constructor(line, character) { this.line = line; this.character = character; } }
  class Range {
    constructor(a, b, c, d) {
      if (a instanceof Position) { this.start = a; this.end = b; } else {
        this.start = new Position(a, b); this.end = new Position(c, d);
      }
    }
  }
  class Uri {
    constructor(s) { this.s = s; this.fsPath = s.replace(/^file:\/\//, ""); }
    static parse(s) { return new Uri(s); }
    toString() { return this.s; }
  }
  class MarkdownString {
    constructor(value) { this.value = value || ""; }
    appendText(t) { this.value += t.replace(/[\\`*_{}[\]()#+\-.!]/g, "\\$&"); return this; }
    appendCodeblock(code, lang) { this.value += "\n```" + lang + "\n" + code + "\n```\n"; return this; }
  }
  class EventEmitter {
    constructor() { this.fs = []; this.event = (f) => { this.fs.push(f); return {dispose() {}}; }; }
    fire(v) { this.fs.forEach((f) => f(v)); }
  }
  const record = (...names) => class { constructor(...args) { names.forEach((n, i) => { this[n] = args[i]; }); } };
  const document = {
    uri: Uri.parse("file:///work/m.nn"), languageId: "nndsl", version: 1,
    text: "model m() {\n    input x: f32[N, 4]\n    h = x |> relu\n    output y = x\n}\n",
    getText() { return this.text; },
  };
  const vscode = {
    Position, Range, Uri, MarkdownString, EventEmitter,
    Location: record("uri", "range"),
    Diagnostic: record("range", "message", "severity"),
    DiagnosticRelatedInformation: record("location", "message"),
    Hover: record("contents", "range"),
    DocumentSymbol: record("name", "detail", "kind", "range", "selectionRange"),
    SymbolInformation: record("name", "kind", "containerName", "location"),
    CompletionItem: record("label", "kind"),
    CompletionList: record("items", "isIncomplete"),
    SnippetString: record("value"),
    InlayHint: record("position", "label", "kind"),
    InlayHintLabelPart: record("value"),
    TextEdit: record("range", "newText"),
    WorkspaceEdit: class { constructor() { this.edits = []; } replace(u, r, t) { this.edits.push([u, r, t]); } },
    DiagnosticSeverity: {Error: 0, Warning: 1, Information: 2, Hint: 3},
    env: {language: "en"},
    window: {
      createOutputChannel: () => ({appendLine: (t) => lines.push(t), append: (t) => lines.push(t),
                                   show() {}, dispose() {}}),
      showErrorMessage: (m) => { lines.push(`ERROR ${m}`); return Promise.resolve(undefined); },
      showWarningMessage: () => Promise.resolve(undefined),
      showInformationMessage: () => Promise.resolve(undefined),
    },
    commands: {registerCommand: (name, f) => { providers[`command:${name}`] = f; return {dispose() {}}; },
               executeCommand: () => Promise.resolve()},
    workspace: {
      workspaceFolders: [{uri: Uri.parse("file:///work"), name: "work"}],
      textDocuments: [document],
      getConfiguration: (section) => ({get: (key, dflt) => {
        const full = section ? `${section}.${key}` : key;
        return full in config ? config[full] : dflt;
      }}),
      onDidOpenTextDocument: on("open"), onDidChangeTextDocument: on("change"),
      onDidCloseTextDocument: on("close"), onDidSaveTextDocument: on("save"),
      onDidChangeConfiguration: on("configuration"),
      applyEdit: () => Promise.resolve(true),
    },
    languages: {
      createDiagnosticCollection: () => ({set: (u, d) => diagnostics.set(u.toString(), d),
                                          delete: (u) => diagnostics.delete(u.toString()),
                                          clear: () => diagnostics.clear(), dispose() {}}),
      registerHoverProvider: register("hover"), registerDefinitionProvider: register("definition"),
      registerDocumentSymbolProvider: register("symbols"),
      registerCompletionItemProvider: register("completion"),
      registerInlayHintsProvider: register("inlay"),
      registerDocumentFormattingEditProvider: register("formatting"),
    },
  };
  return {vscode, listeners, providers, diagnostics, lines, document};
}

function until(check, what, ms = 10000) {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    (function poll() {
      const v = check();
      if (v) { resolve(v); return; }
      if (Date.now() - t0 > ms) { reject(new Error(`timed out waiting for ${what}`)); return; }
      setTimeout(poll, 20);
    })();
  });
}

async function extension() {
  const config = {"nndsl.server.path": python,
                  "nndsl.server.args": [path.join(HERE, "fake_server.py"), logFile],
                  "nndsl.inlayHints.enabled": false};
  const fake = fakeVscode(config);
  const load = Module._load;
  Module._load = function (request, ...rest) {
    return request === "vscode" ? fake.vscode : load.call(this, request, ...rest);
  };
  const ext = require(path.join(ROOT, "extension.js"));
  const subscriptions = [];
  await ext.activate({subscriptions});
  const uri = fake.document.uri.toString();

  // publishDiagnostics -> the collection, with severity, code and related information
  const diags = await until(() => fake.diagnostics.get(uri), "diagnostics");
  assert.strictEqual(diags.length, 1);
  assert.strictEqual(diags[0].severity, 1);   // Warning
  assert.strictEqual(diags[0].code, "W0101");
  assert.strictEqual(diags[0].message, "`h` is never used — ünïcode");
  assert.strictEqual(diags[0].range.start.line, 2);
  assert.strictEqual(diags[0].relatedInformation[0].message, "defined here");

  const P = fake.providers;
  const token = {isCancellationRequested: false, onCancellationRequested: () => ({dispose() {}})};
  const pos = new fake.vscode.Position(1, 10);
  const hover = await P.hover.provider.provideHover(fake.document, pos, token);
  assert.strictEqual(hover.contents[0].value, "`x`: **f32[N, 4]**");
  const defs = await P.definition.provider.provideDefinition(fake.document, pos, token);
  assert.strictEqual(defs[0].uri.toString(), "file:///work/m.nn");
  assert.strictEqual(defs[0].range.start.character, 10);
  const symbols = await P.symbols.provider.provideDocumentSymbols(fake.document, token);
  assert.strictEqual(symbols[0].name, "m");
  assert.strictEqual(symbols[0].kind, 11);           // LSP 12 (function) is VS Code's 11
  assert.strictEqual(symbols[0].children[0].name, "x");
  assert.deepStrictEqual(P.completion.rest, ["."]);  // the server's trigger characters
  const list = await P.completion.provider.provideCompletionItems(
    fake.document, new fake.vscode.Position(2, 16), token, {triggerKind: 0});
  assert.strictEqual(list.items[0].label, "linear");
  assert.strictEqual(list.items[0].kind, 2);         // LSP 3 (function)
  assert.strictEqual(list.items[0].insertText.value, "linear(${1:out})");   // a snippet
  assert.strictEqual(list.items[0].documentation.value, "y = x Wᵀ + b");
  assert.strictEqual(list.items[1].range.start.character, 15);
  const range = new fake.vscode.Range(0, 0, 5, 0);
  // inlay hints are off by default: the server is not asked
  assert.deepStrictEqual(await P.inlay.provider.provideInlayHints(fake.document, range, token), []);
  config["nndsl.inlayHints.enabled"] = true;
  const hints = await P.inlay.provider.provideInlayHints(fake.document, range, token);
  assert.strictEqual(hints[0].label, ": f32[N, 2]");
  assert.strictEqual(hints[0].kind, 1);
  assert.strictEqual(hints[0].paddingLeft, true);
  const edits = await P.formatting.provider.provideDocumentFormattingEdits(
    fake.document, {tabSize: 4, insertSpaces: true}, token);
  assert.strictEqual(edits[0].newText, "model");

  // an edit is sent incrementally (the server asked for change kind 2), then close and save
  fake.document.version = 2;
  fake.listeners.change.forEach((f) => f({document: fake.document, contentChanges: [
    {range: new fake.vscode.Range(2, 4, 2, 5), rangeLength: 1, text: "hh"}]}));
  fake.listeners.save.forEach((f) => f(fake.document));
  fake.listeners.close.forEach((f) => f(fake.document));
  assert.strictEqual(fake.diagnostics.has(uri), false);

  await ext.deactivate();
  const log = await until(() => fs.existsSync(logFile) && fs.statSync(logFile).size > 0 &&
                                 JSON.parse(fs.readFileSync(logFile, "utf8")), "the server's log");
  const methods = log.map((m) => m.method || `response ${m.id}`);
  assert.deepStrictEqual(methods.slice(0, 3), ["initialize", "initialized", "textDocument/didOpen"]);
  const init = log[0].params;
  assert.strictEqual(init.rootUri, "file:///work");
  assert.strictEqual(init.capabilities.textDocument.documentSymbol.hierarchicalDocumentSymbolSupport, true);
  assert.strictEqual(log[2].params.textDocument.text, fake.document.text);
  assert.strictEqual(log[2].params.textDocument.languageId, "nndsl");
  const answer = log.find((m) => m.id === "cfg-1");
  assert.deepStrictEqual(answer.result, [false]);          // the setting when it was asked
  assert.strictEqual(log.find((m) => m.id === "odd-1").error.code, -32601);
  const change = log.find((m) => m.method === "textDocument/didChange").params;
  assert.deepStrictEqual(change.textDocument, {uri, version: 2});
  assert.deepStrictEqual(change.contentChanges, [{range: {start: {line: 2, character: 4},
                                                          end: {line: 2, character: 5}},
                                                  rangeLength: 1, text: "hh"}]);
  assert.ok(methods.includes("textDocument/didSave"));
  assert.ok(methods.includes("textDocument/didClose"));
  assert.strictEqual(log.filter((m) => m.method === "textDocument/inlayHint").length, 1);
  assert.deepStrictEqual(methods.slice(-2), ["shutdown", "exit"]);
  assert.ok(!fake.lines.some((l) => l.startsWith("ERROR")), fake.lines.join("\n"));

  // a command that is not there: one clear message, nothing thrown
  const missing = fakeVscode({"nndsl.server.path": path.join(HERE, "no-such-nndsl")});
  Module._load = function (request, ...rest) {
    return request === "vscode" ? missing.vscode : load.call(this, request, ...rest);
  };
  delete require.cache[path.join(ROOT, "extension.js")];
  const ext2 = require(path.join(ROOT, "extension.js"));
  await ext2.activate({subscriptions: []});
  assert.ok(missing.lines.some((l) => l.startsWith("ERROR") && l.includes("was not found")),
            missing.lines.join("\n"));
  await ext2.deactivate();
}

/** The extension against a real server: a spec with a mistake gets a diagnostic, and every
 *  provider the server offers answers without an error. */
async function smoke(command, args) {
  const config = {"nndsl.server.path": command, "nndsl.server.args": args,
                  "nndsl.inlayHints.enabled": true};
  const fake = fakeVscode(config);
  fake.document.text = "model m() {\n    input x: f32[N, 4]\n    h = x |> relu\n" +
                       "    output y = x |> linear(2) |> nosuch\n}\n";
  const load = Module._load;
  Module._load = function (request, ...rest) {
    return request === "vscode" ? fake.vscode : load.call(this, request, ...rest);
  };
  const ext = require(path.join(ROOT, "extension.js"));
  await ext.activate({subscriptions: []});
  const uri = fake.document.uri.toString();
  const diags = await until(() => { const d = fake.diagnostics.get(uri); return d && d.length && d; },
                            "diagnostics", 60000);
  console.log("diagnostics:", diags.map((d) => `${d.range.start.line + 1}: ${d.code} ${d.message}`));
  const token = {isCancellationRequested: false, onCancellationRequested: () => ({dispose() {}})};
  const P = fake.providers;
  const pos = new fake.vscode.Position(2, 4);
  console.log("providers:", Object.keys(P).filter((k) => !k.startsWith("command:")));
  if (P.hover) { console.log("hover:", JSON.stringify(await P.hover.provider.provideHover(fake.document, pos, token))); }
  if (P.symbols) { console.log("symbols:", (await P.symbols.provider.provideDocumentSymbols(fake.document, token)).map((s) => s.name)); }
  if (P.completion) {
    const c = await P.completion.provider.provideCompletionItems(fake.document, new fake.vscode.Position(2, 14), token, {triggerKind: 0});
    console.log("completion:", (c.items || c).length, "items");
  }
  if (P.inlay) { console.log("inlay:", (await P.inlay.provider.provideInlayHints(fake.document, new fake.vscode.Range(0, 0, 5, 0), token)).map((h) => h.label)); }
  await ext.deactivate();
  assert.ok(!fake.lines.some((l) => l.startsWith("ERROR") || / failed: /.test(l)), fake.lines.join("\n"));
}

(process.argv[2] === "--server" ? smoke(process.argv[3], process.argv.slice(4))
  : framing().then(extension))
  .then(() => { console.log("ok"); process.exit(0); },
        (e) => { console.error(e && e.stack || e); process.exit(1); });
