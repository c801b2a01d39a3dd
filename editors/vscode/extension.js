// The nndsl extension: highlighting comes from the TextMate grammar (package.json); this file
// starts the language server (`nndsl lsp`) over stdio and forwards what it offers to VS Code:
// diagnostics, hover, go to definition, document symbols (the outline), completion, inlay
// hints and, if the server formats, formatting. A small client of its own (lsp.js) speaks the
// protocol, so the folder installs as it is: no npm packages, no build step.
"use strict";

const vscode = require("vscode");
const cp = require("child_process");
const os = require("os");
const path = require("path");
const {Connection} = require("./lsp");

const LANGUAGE = "nndsl";
const SELECTOR = [{language: LANGUAGE, scheme: "file"}, {language: LANGUAGE, scheme: "untitled"}];
const VERSION = require("./package.json").version;
const MAX_RESTARTS = 4;               // crashes within RESTART_WINDOW_MS before giving up
const RESTART_WINDOW_MS = 3 * 60 * 1000;
const SHUTDOWN_MS = 2000;

// ---- protocol values to VS Code's and back --------------------------------------------------

function toPosition(p) { return new vscode.Position(p.line, p.character); }

function toRange(r) { return new vscode.Range(toPosition(r.start), toPosition(r.end)); }

function fromPosition(p) { return {line: p.line, character: p.character}; }

function fromRange(r) { return {start: fromPosition(r.start), end: fromPosition(r.end)}; }

function toUri(uri) { return vscode.Uri.parse(uri); }

function toLocation(l) { return new vscode.Location(toUri(l.uri), toRange(l.range)); }

const SEVERITY = {1: "Error", 2: "Warning", 3: "Information", 4: "Hint"};

function toDiagnostic(d) {
  const severity = vscode.DiagnosticSeverity[SEVERITY[d.severity] || "Error"];
  const out = new vscode.Diagnostic(toRange(d.range), d.message, severity);
  out.source = d.source || LANGUAGE;
  if (d.code !== undefined && d.code !== null) {
    out.code = d.codeDescription && d.codeDescription.href
      ? {value: d.code, target: toUri(d.codeDescription.href)} : d.code;
  }
  if (Array.isArray(d.relatedInformation)) {
    out.relatedInformation = d.relatedInformation.map((r) =>
      new vscode.DiagnosticRelatedInformation(toLocation(r.location), r.message));
  }
  if (Array.isArray(d.tags)) {   // 1 unnecessary, 2 deprecated: the same numbers in VS Code
    out.tags = d.tags.filter((t) => t === 1 || t === 2);
  }
  return out;
}

/** MarkupContent, a MarkedString or a list of them, as MarkdownStrings. */
function toMarkdown(contents) {
  if (contents === undefined || contents === null) { return []; }
  if (Array.isArray(contents)) { return [].concat(...contents.map(toMarkdown)); }
  if (typeof contents === "string") { return [new vscode.MarkdownString(contents)]; }
  if (contents.kind === "markdown") { return [new vscode.MarkdownString(contents.value)]; }
  if (contents.kind === "plaintext") { return [new vscode.MarkdownString().appendText(contents.value)]; }
  if (contents.language !== undefined) {
    return [new vscode.MarkdownString().appendCodeblock(contents.value, contents.language)];
  }
  return [];
}

function toDocumentation(doc) {
  if (doc === undefined || doc === null) { return undefined; }
  if (typeof doc === "string") { return doc; }
  return toMarkdown(doc)[0];
}

function toDefinition(result) {
  if (!result) { return null; }
  const list = Array.isArray(result) ? result : [result];
  return list.map((l) => l.targetUri === undefined ? toLocation(l) : {
    originSelectionRange: l.originSelectionRange ? toRange(l.originSelectionRange) : undefined,
    targetUri: toUri(l.targetUri),
    targetRange: toRange(l.targetRange),
    targetSelectionRange: toRange(l.targetSelectionRange || l.targetRange),
  });
}

// LSP counts symbol and completion kinds from 1, VS Code from 0
function toSymbolKind(k) { return Math.max(0, (k || 13) - 1); }

function toSymbols(result) {
  if (!Array.isArray(result)) { return []; }
  return result.map(function convert(s) {
    if (s.location !== undefined) {   // SymbolInformation
      return new vscode.SymbolInformation(s.name, toSymbolKind(s.kind), s.containerName || "",
                                          toLocation(s.location));
    }
    const out = new vscode.DocumentSymbol(s.name, s.detail || "", toSymbolKind(s.kind),
                                          toRange(s.range), toRange(s.selectionRange || s.range));
    out.children = (s.children || []).map(convert);
    return out;
  });
}

function toTextEdit(e) { return new vscode.TextEdit(toRange(e.range), e.newText); }

function toCompletionItem(item, defaults) {
  const label = item.labelDetails
    ? {label: item.label, detail: item.labelDetails.detail,
       description: item.labelDetails.description}
    : item.label;
  const out = new vscode.CompletionItem(label, item.kind ? item.kind - 1 : undefined);
  out.detail = item.detail;
  out.documentation = toDocumentation(item.documentation);
  out.sortText = item.sortText;
  out.filterText = item.filterText;
  out.preselect = item.preselect;
  if (item.commitCharacters) { out.commitCharacters = item.commitCharacters; }
  const snippet = (item.insertTextFormat || (defaults && defaults.insertTextFormat)) === 2;
  let text = item.insertText !== undefined ? item.insertText : undefined;
  const edit = item.textEdit;
  if (edit) {
    text = edit.newText;
    out.range = edit.range ? toRange(edit.range)
      : {inserting: toRange(edit.insert), replacing: toRange(edit.replace)};
  } else if (defaults && defaults.editRange) {
    const r = defaults.editRange;
    out.range = r.start ? toRange(r) : {inserting: toRange(r.insert), replacing: toRange(r.replace)};
  }
  if (text !== undefined) { out.insertText = snippet ? new vscode.SnippetString(text) : text; }
  if (item.additionalTextEdits) { out.additionalTextEdits = item.additionalTextEdits.map(toTextEdit); }
  out.nndslItem = item;   // kept for completionItem/resolve
  return out;
}

function toCompletions(result) {
  if (!result) { return []; }
  const items = Array.isArray(result) ? result : result.items || [];
  const defaults = Array.isArray(result) ? undefined : result.itemDefaults;
  const list = items.map((i) => toCompletionItem(i, defaults));
  return Array.isArray(result) ? list : new vscode.CompletionList(list, !!result.isIncomplete);
}

function toInlayHint(h) {
  const label = typeof h.label === "string" ? h.label : h.label.map((part) => {
    const out = new vscode.InlayHintLabelPart(part.value);
    if (part.tooltip !== undefined) { out.tooltip = toDocumentation(part.tooltip); }
    if (part.location) { out.location = toLocation(part.location); }
    return out;
  });
  const out = new vscode.InlayHint(toPosition(h.position), label, h.kind);   // 1 type, 2 parameter
  if (h.tooltip !== undefined) { out.tooltip = toDocumentation(h.tooltip); }
  out.paddingLeft = !!h.paddingLeft;
  out.paddingRight = !!h.paddingRight;
  if (h.textEdits) { out.textEdits = h.textEdits.map(toTextEdit); }
  return out;
}

function toWorkspaceEdit(e) {
  const out = new vscode.WorkspaceEdit();
  for (const uri of Object.keys(e.changes || {})) {
    for (const edit of e.changes[uri]) { out.replace(toUri(uri), toRange(edit.range), edit.newText); }
  }
  for (const change of e.documentChanges || []) {
    if (change.textDocument && Array.isArray(change.edits)) {
      for (const edit of change.edits) {
        out.replace(toUri(change.textDocument.uri), toRange(edit.range), edit.newText);
      }
    }
  }
  return out;
}

// ---- settings -------------------------------------------------------------------------------

function settings() {
  const c = vscode.workspace.getConfiguration(LANGUAGE);
  return {
    path: c.get("server.path", "nndsl"),
    args: c.get("server.args", ["lsp"]),
    enabled: c.get("server.enabled", true),
    inlayHints: c.get("inlayHints.enabled", false),
    trace: c.get("trace.server", "off"),
  };
}

/** `${workspaceFolder}`, `${userHome}` and a leading `~` in the command path. */
function expand(text) {
  const folder = (vscode.workspace.workspaceFolders || [])[0];
  let out = String(text)
    .replace(/\$\{workspaceFolder\}/g, folder ? folder.uri.fsPath : process.cwd())
    .replace(/\$\{userHome\}/g, os.homedir());
  if (out === "~" || out.startsWith("~/")) { out = path.join(os.homedir(), out.slice(1)); }
  return out;
}

function isOurs(document) { return document.languageId === LANGUAGE; }

// ---- the client -----------------------------------------------------------------------------

class Client {
  constructor(output, diagnostics) {
    this.output = output;
    this.diagnostics = diagnostics;
    this.process = null;
    this.connection = null;
    this.capabilities = {};
    this.registrations = [];      // providers and listeners of this run of the server
    this.inlayHintsChanged = new vscode.EventEmitter();
    this.stopping = false;
    this.crashes = [];
  }

  log(text) { this.output.appendLine(text); }

  async start() {
    const s = settings();
    if (!s.enabled) { this.log("the language server is turned off (nndsl.server.enabled)"); return; }
    const command = expand(s.path);
    const args = (s.args || []).map(expand);
    const folder = (vscode.workspace.workspaceFolders || [])[0];
    this.log(`starting ${[command, ...args].join(" ")}`);
    this.stopping = false;
    let child;
    try {
      child = cp.spawn(command, args, {cwd: folder ? folder.uri.fsPath : os.homedir(),
                                       env: process.env, stdio: ["pipe", "pipe", "pipe"]});
    } catch (e) {
      this.failed(command, e);
      return;
    }
    this.process = child;
    const started = new Promise((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    child.stderr.on("data", (d) => this.output.append(d.toString("utf8")));
    child.on("exit", (code, signal) => this.exited(child, code, signal));
    try {
      await started;
    } catch (e) {
      this.process = null;
      this.failed(command, e);
      return;
    }
    const trace = s.trace === "messages";
    const connection = new Connection(child.stdout, child.stdin, (what, message) => {
      if (message === undefined) { this.log(what); } else if (trace) {
        this.log(`${what} ${JSON.stringify(message)}`);
      }
    });
    this.connection = connection;
    this.handleServer(connection);
    const result = await connection.request("initialize", this.initializeParams(s));
    this.capabilities = (result && result.capabilities) || {};
    connection.notify("initialized", {});
    this.register();
    for (const document of vscode.workspace.textDocuments) {
      if (isOurs(document)) { this.didOpen(document); }
    }
    this.log(`the language server is running${result && result.serverInfo
      ? ` (${result.serverInfo.name} ${result.serverInfo.version || ""})` : ""}`);
  }

  failed(command, e) {
    const missing = e && e.code === "ENOENT";
    const why = missing ? `\`${command}\` was not found` : String(e && e.message || e);
    this.log(`cannot start the language server: ${why}`);
    vscode.window.showErrorMessage(
      `nndsl: cannot start the language server: ${why}. Install nndsl with the language server ` +
      `(pip install "nndsl[lsp]") or set nndsl.server.path.`, "Open settings")
      .then((choice) => {
        if (choice) { vscode.commands.executeCommand("workbench.action.openSettings", "nndsl.server"); }
      });
  }

  exited(child, code, signal) {
    if (child !== this.process) { return; }
    this.log(`the language server exited (${signal ? `signal ${signal}` : `code ${code}`})`);
    this.teardown();
    if (this.stopping) { return; }
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < RESTART_WINDOW_MS).concat([now]);
    if (this.crashes.length <= MAX_RESTARTS) {
      this.log("restarting it");
      this.start().catch((e) => this.log(`restart failed: ${e.stack || e}`));
    } else {
      vscode.window.showErrorMessage(
        `nndsl: the language server stopped ${this.crashes.length} times in a few minutes; ` +
        "it is not restarted again.", "Show log", "Restart")
        .then((choice) => {
          if (choice === "Show log") { this.output.show(); }
          if (choice === "Restart") { this.crashes = []; this.start(); }
        });
    }
  }

  teardown() {
    for (const r of this.registrations) { r.dispose(); }
    this.registrations = [];
    if (this.connection) { this.connection.close(new Error("the language server stopped")); }
    this.connection = null;
    this.process = null;
    this.diagnostics.clear();
  }

  async stop() {
    this.stopping = true;
    const child = this.process;
    const connection = this.connection;
    if (!child) { this.teardown(); return; }
    if (connection) {
      try {
        await Promise.race([connection.request("shutdown", null),
                            new Promise((resolve) => setTimeout(resolve, SHUTDOWN_MS))]);
        connection.notify("exit", null);
      } catch (e) { /* it is going anyway */ }
    }
    this.teardown();
    const timer = setTimeout(() => { try { child.kill(); } catch (e) { /* gone */ } }, SHUTDOWN_MS);
    child.once("exit", () => clearTimeout(timer));
  }

  initializeParams(s) {
    const folders = vscode.workspace.workspaceFolders || [];
    const range = (n) => Array.from({length: n}, (_, i) => i + 1);
    return {
      processId: process.pid,
      clientInfo: {name: "nndsl-vscode", version: VERSION},
      locale: vscode.env.language,
      rootUri: folders.length ? folders[0].uri.toString() : null,
      workspaceFolders: folders.length
        ? folders.map((f) => ({uri: f.uri.toString(), name: f.name})) : null,
      initializationOptions: {inlayHints: s.inlayHints},
      capabilities: {
        general: {positionEncodings: ["utf-16"]},
        workspace: {configuration: true, workspaceFolders: true, applyEdit: true,
                    didChangeConfiguration: {dynamicRegistration: false},
                    inlayHint: {refreshSupport: true}},
        window: {workDoneProgress: false, showMessage: {}},
        textDocument: {
          synchronization: {dynamicRegistration: false, didSave: true, willSave: false,
                            willSaveWaitUntil: false},
          publishDiagnostics: {relatedInformation: true, versionSupport: true,
                               codeDescriptionSupport: true, tagSupport: {valueSet: [1, 2]}},
          hover: {contentFormat: ["markdown", "plaintext"]},
          definition: {linkSupport: true},
          documentSymbol: {hierarchicalDocumentSymbolSupport: true,
                           symbolKind: {valueSet: range(26)}},
          completion: {
            contextSupport: true,
            completionItem: {snippetSupport: true, labelDetailsSupport: true,
                             insertReplaceSupport: true, commitCharactersSupport: true,
                             documentationFormat: ["markdown", "plaintext"],
                             resolveSupport: {properties: ["documentation", "detail"]}},
            completionItemKind: {valueSet: range(25)},
            completionList: {itemDefaults: ["editRange", "insertTextFormat"]},
          },
          inlayHint: {dynamicRegistration: false},
          formatting: {dynamicRegistration: false},
        },
      },
    };
  }

  /** What the server may send or ask: diagnostics, messages, configuration... */
  handleServer(c) {
    c.onNotification("textDocument/publishDiagnostics", (p) => {
      this.diagnostics.set(toUri(p.uri), (p.diagnostics || []).map(toDiagnostic));
    });
    c.onNotification("window/logMessage", (p) => this.log(p.message));
    c.onNotification("window/showMessage", (p) => {
      const show = {1: "showErrorMessage", 2: "showWarningMessage"}[p.type] || "showInformationMessage";
      vscode.window[show](`nndsl: ${p.message}`);
    });
    c.onNotification("$/logTrace", (p) => this.log(p.message));
    c.onRequest("window/showMessageRequest", async (p) => {
      const show = {1: "showErrorMessage", 2: "showWarningMessage"}[p.type] || "showInformationMessage";
      const titles = (p.actions || []).map((a) => a.title);
      const choice = await vscode.window[show](`nndsl: ${p.message}`, ...titles);
      return (p.actions || []).find((a) => a.title === choice) || null;
    });
    c.onRequest("workspace/configuration", (p) => (p.items || []).map((item) => {
      const section = item.section || LANGUAGE;
      const scope = item.scopeUri ? toUri(item.scopeUri) : undefined;
      const dot = section.lastIndexOf(".");
      const config = dot < 0 ? vscode.workspace.getConfiguration(undefined, scope)
        : vscode.workspace.getConfiguration(section.slice(0, dot), scope);
      const value = config.get(dot < 0 ? section : section.slice(dot + 1));
      return value === undefined ? null : value;
    }));
    c.onRequest("workspace/workspaceFolders", () => (vscode.workspace.workspaceFolders || [])
      .map((f) => ({uri: f.uri.toString(), name: f.name})));
    c.onRequest("workspace/applyEdit", async (p) => ({
      applied: await vscode.workspace.applyEdit(toWorkspaceEdit(p.edit)),
    }));
    c.onRequest("workspace/inlayHint/refresh", () => { this.inlayHintsChanged.fire(); return null; });
    c.onRequest("workspace/diagnostic/refresh", () => null);
    c.onRequest("window/workDoneProgress/create", () => null);
    c.onRequest("client/registerCapability", () => null);
    c.onRequest("client/unregisterCapability", () => null);
  }

  syncKind() {
    const sync = this.capabilities.textDocumentSync;
    if (typeof sync === "number") { return sync; }
    return sync && typeof sync.change === "number" ? sync.change : 1;
  }

  didOpen(document) {
    if (!this.connection) { return; }
    this.connection.notify("textDocument/didOpen", {textDocument: {
      uri: document.uri.toString(), languageId: LANGUAGE, version: document.version,
      text: document.getText()}});
  }

  didChange(event) {
    if (!this.connection || !isOurs(event.document) || event.contentChanges.length === 0) { return; }
    const kind = this.syncKind();
    if (kind === 0) { return; }
    const document = event.document;
    const changes = kind === 2
      ? event.contentChanges.map((c) => ({range: fromRange(c.range), rangeLength: c.rangeLength,
                                          text: c.text}))
      : [{text: document.getText()}];
    this.connection.notify("textDocument/didChange", {
      textDocument: {uri: document.uri.toString(), version: document.version},
      contentChanges: changes});
  }

  didClose(document) {
    if (!this.connection) { return; }
    this.connection.notify("textDocument/didClose", {textDocument: {uri: document.uri.toString()}});
    this.diagnostics.delete(document.uri);
  }

  didSave(document) {
    const sync = this.capabilities.textDocumentSync;
    if (!this.connection || !sync || typeof sync !== "object" || !sync.save) { return; }
    const params = {textDocument: {uri: document.uri.toString()}};
    if (sync.save.includeText) { params.text = document.getText(); }
    this.connection.notify("textDocument/didSave", params);
  }

  /** A request about a document; null when the server is gone or the request was cancelled. */
  async ask(method, params, token) {
    if (!this.connection) { return null; }
    try {
      return await this.connection.request(method, params, token);
    } catch (e) {
      if (!e.cancelled && !(token && token.isCancellationRequested)) {
        this.log(`${method} failed: ${e.message}`);
      }
      return null;
    }
  }

  register() {
    const caps = this.capabilities;
    const add = (d) => this.registrations.push(d);
    const doc = (document) => ({uri: document.uri.toString()});
    const at = (document, position) => ({textDocument: doc(document),
                                         position: fromPosition(position)});
    add(vscode.workspace.onDidOpenTextDocument((d) => { if (isOurs(d)) { this.didOpen(d); } }));
    add(vscode.workspace.onDidChangeTextDocument((e) => this.didChange(e)));
    add(vscode.workspace.onDidCloseTextDocument((d) => { if (isOurs(d)) { this.didClose(d); } }));
    add(vscode.workspace.onDidSaveTextDocument((d) => { if (isOurs(d)) { this.didSave(d); } }));
    const L = vscode.languages;
    if (caps.hoverProvider) {
      add(L.registerHoverProvider(SELECTOR, {provideHover: async (d, p, t) => {
        const r = await this.ask("textDocument/hover", at(d, p), t);
        return r ? new vscode.Hover(toMarkdown(r.contents), r.range ? toRange(r.range) : undefined)
          : null;
      }}));
    }
    if (caps.definitionProvider) {
      add(L.registerDefinitionProvider(SELECTOR, {provideDefinition: async (d, p, t) =>
        toDefinition(await this.ask("textDocument/definition", at(d, p), t))}));
    }
    if (caps.documentSymbolProvider) {
      add(L.registerDocumentSymbolProvider(SELECTOR, {provideDocumentSymbols: async (d, t) =>
        toSymbols(await this.ask("textDocument/documentSymbol", {textDocument: doc(d)}, t))},
      {label: "nndsl"}));
    }
    if (caps.completionProvider) {
      const triggers = caps.completionProvider.triggerCharacters || [];
      const provider = {
        provideCompletionItems: async (d, p, t, context) => {
          const params = at(d, p);
          params.context = {triggerKind: context.triggerKind + 1,
                            triggerCharacter: context.triggerCharacter};
          return toCompletions(await this.ask("textDocument/completion", params, t));
        },
      };
      if (caps.completionProvider.resolveProvider) {
        provider.resolveCompletionItem = async (item, t) => {
          const r = await this.ask("completionItem/resolve", item.nndslItem, t);
          if (r) {
            if (r.detail !== undefined) { item.detail = r.detail; }
            if (r.documentation !== undefined) { item.documentation = toDocumentation(r.documentation); }
          }
          return item;
        };
      }
      add(L.registerCompletionItemProvider(SELECTOR, provider, ...triggers));
    }
    if (caps.inlayHintProvider && typeof L.registerInlayHintsProvider === "function") {
      add(L.registerInlayHintsProvider(SELECTOR, {
        onDidChangeInlayHints: this.inlayHintsChanged.event,
        provideInlayHints: async (d, range, t) => {
          if (!settings().inlayHints) { return []; }
          const r = await this.ask("textDocument/inlayHint",
                                   {textDocument: doc(d), range: fromRange(range)}, t);
          return Array.isArray(r) ? r.map(toInlayHint) : [];
        },
      }));
    }
    if (caps.documentFormattingProvider) {
      add(L.registerDocumentFormattingEditProvider(SELECTOR, {
        provideDocumentFormattingEdits: async (d, options, t) => {
          const r = await this.ask("textDocument/formatting", {
            textDocument: doc(d),
            options: {tabSize: options.tabSize, insertSpaces: options.insertSpaces}}, t);
          return Array.isArray(r) ? r.map(toTextEdit) : [];
        },
      }));
    }
  }

  configurationChanged() {
    if (!this.connection) { return; }
    this.connection.notify("workspace/didChangeConfiguration", {settings: {[LANGUAGE]: settings()}});
    this.inlayHintsChanged.fire();
  }
}

// ---- activation -----------------------------------------------------------------------------

let client = null;

async function activate(context) {
  const output = vscode.window.createOutputChannel("nndsl");
  const diagnostics = vscode.languages.createDiagnosticCollection(LANGUAGE);
  context.subscriptions.push(output, diagnostics);
  client = new Client(output, diagnostics);
  const restart = async () => {
    await client.stop();
    client.crashes = [];
    await client.start();
  };
  context.subscriptions.push(
    vscode.commands.registerCommand("nndsl.restartServer", () =>
      restart().catch((e) => output.appendLine(`restart failed: ${e.stack || e}`))),
    vscode.commands.registerCommand("nndsl.showLog", () => output.show()),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(LANGUAGE)) { return; }
      if (e.affectsConfiguration(`${LANGUAGE}.server`)) {
        restart().catch((err) => output.appendLine(`restart failed: ${err.stack || err}`));
      } else {
        client.configurationChanged();
      }
    }),
    {dispose: () => { client.stop(); }});
  try {
    await client.start();
  } catch (e) {
    output.appendLine(`the language server did not start: ${e.stack || e}`);
  }
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = {activate, deactivate,
                  // for tests: the conversions between the protocol's values and VS Code's
                  _convert: {toDiagnostic, toMarkdown, toDefinition, toSymbols, toCompletions,
                             toInlayHint, toRange, fromRange, expand}};
