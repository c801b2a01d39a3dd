// JSON-RPC 2.0 over a byte stream with LSP's framing (a `Content-Length` header, a blank line,
// then that many bytes of UTF-8 JSON). Plain Node.js, no VS Code API: extension.js builds the
// client on it, and test_vscode_lsp.js checks it without an editor.
"use strict";

const HEADER_END = Buffer.from("\r\n\r\n", "ascii");
const MAX_MESSAGE = 256 * 1024 * 1024;   // a larger Content-Length is a broken stream

/** One message as LSP frames it. */
function encode(message) {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, "ascii"), body]);
}

/** Splits a byte stream into messages; feed() takes chunks cut anywhere. */
class MessageParser {
  constructor(onMessage, onError) {
    this.onMessage = onMessage;
    this.onError = onError || (() => {});
    this.buffer = Buffer.alloc(0);
    this.length = -1;   // the body length once its header is read
  }

  feed(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : Buffer.from(chunk);
    for (;;) {
      if (this.length < 0) {
        const end = this.buffer.indexOf(HEADER_END);
        if (end < 0) {
          if (this.buffer.length > 64 * 1024) {
            this.onError(new Error("no message header in the first 64 KiB"));
            this.buffer = Buffer.alloc(0);
          }
          return;
        }
        const header = this.buffer.subarray(0, end).toString("ascii");
        this.buffer = this.buffer.subarray(end + HEADER_END.length);
        let length = -1;
        for (const line of header.split("\r\n")) {
          const m = /^content-length:\s*(\d+)\s*$/i.exec(line);
          if (m) { length = Number(m[1]); }
        }
        if (length < 0 || length > MAX_MESSAGE) {
          this.onError(new Error(`bad message header: ${JSON.stringify(header.slice(0, 200))}`));
          continue;
        }
        this.length = length;
      }
      if (this.buffer.length < this.length) { return; }
      const body = this.buffer.subarray(0, this.length).toString("utf8");
      this.buffer = this.buffer.subarray(this.length);
      this.length = -1;
      let message;
      try {
        message = JSON.parse(body);
      } catch (e) {
        this.onError(new Error(`a message that is not JSON: ${e.message}`));
        continue;
      }
      this.onMessage(message);
    }
  }
}

const METHOD_NOT_FOUND = -32601;
const REQUEST_CANCELLED = -32800;

/** Requests, responses and notifications both ways over a readable and a writable stream. */
class Connection {
  constructor(readable, writable, log) {
    this.writable = writable;
    this.log = log || (() => {});
    this.nextId = 1;
    this.pending = new Map();        // id -> {resolve, reject, method}
    this.requestHandlers = new Map();
    this.notificationHandlers = new Map();
    this.closed = false;
    this.parser = new MessageParser((m) => this.dispatch(m),
                                    (e) => this.log(`protocol error: ${e.message}`));
    readable.on("data", (chunk) => this.parser.feed(chunk));
    readable.on("close", () => this.close(new Error("the server closed its output")));
  }

  send(message) {
    if (this.closed) { return; }
    this.log("send", message);
    this.writable.write(encode(message));
  }

  /** A request; `token` is an optional VS Code CancellationToken. */
  request(method, params, token) {
    if (this.closed) { return Promise.reject(new Error("the language server is not running")); }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {resolve, reject, method});
      this.send({jsonrpc: "2.0", id, method, params});
      if (token && typeof token.onCancellationRequested === "function") {
        token.onCancellationRequested(() => {
          if (this.pending.has(id)) { this.notify("$/cancelRequest", {id}); }
        });
      }
    });
  }

  notify(method, params) {
    this.send({jsonrpc: "2.0", method, params});
  }

  onRequest(method, handler) { this.requestHandlers.set(method, handler); }

  onNotification(method, handler) { this.notificationHandlers.set(method, handler); }

  dispatch(message) {
    this.log("receive", message);
    if (message.method === undefined) {   // a response
      const waiting = this.pending.get(message.id);
      if (!waiting) { return; }
      this.pending.delete(message.id);
      if (message.error) {
        const err = new Error(message.error.message || "request failed");
        err.code = message.error.code;
        err.cancelled = message.error.code === REQUEST_CANCELLED;
        waiting.reject(err);
      } else {
        waiting.resolve(message.result === undefined ? null : message.result);
      }
      return;
    }
    if (message.id === undefined) {       // a notification
      const handler = this.notificationHandlers.get(message.method);
      if (handler) {
        try { handler(message.params); } catch (e) { this.log(`${message.method}: ${e.stack}`); }
      }
      return;
    }
    const handler = this.requestHandlers.get(message.method);   // a request from the server
    if (!handler) {
      this.send({jsonrpc: "2.0", id: message.id,
                 error: {code: METHOD_NOT_FOUND, message: `unhandled method ${message.method}`}});
      return;
    }
    Promise.resolve()
      .then(() => handler(message.params))
      .then((result) => this.send({jsonrpc: "2.0", id: message.id,
                                   result: result === undefined ? null : result}),
            (e) => this.send({jsonrpc: "2.0", id: message.id,
                              error: {code: -32603, message: String(e && e.message || e)}}));
  }

  close(reason) {
    if (this.closed) { return; }
    this.closed = true;
    for (const [, waiting] of this.pending) { waiting.reject(reason); }
    this.pending.clear();
  }
}

module.exports = {encode, MessageParser, Connection, METHOD_NOT_FOUND, REQUEST_CANCELLED};
