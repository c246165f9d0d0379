// A Node `ws` echo server for `cargo xtask load --compare`: `node ws-echo.js [ADDR]`
// (default 127.0.0.1:0) prints `listening on ADDR` as its first line, then sends
// every text and binary message back, with the type it came with. No compression
// (`ws` turns permessage-deflate off by default on servers; stated anyway), messages
// up to 16 MiB; `ws` sets TCP_NODELAY on every socket.
"use strict";
const { WebSocketServer } = require("ws");

const [host, port] = (process.argv[2] ?? "127.0.0.1:0").split(":");
const wss = new WebSocketServer({
  host,
  port: Number(port),
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
});

wss.on("listening", () => {
  const a = wss.address();
  console.log(`listening on ${a.address}:${a.port}`);
});

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on("error", () => ws.terminate());
});
