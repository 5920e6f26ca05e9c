#!/usr/bin/env node
// A minimal HTTP server for keepup's node recipe, on env PORT (default 8003).
const fs = require("fs");
const http = require("http");
const path = require("path");

const server = http.createServer((req, res) => {
  const send = (body) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.url === "/slow") {
    // A request that takes 2 s; the marker lets a test know it is in progress.
    fs.writeFileSync(path.join(__dirname, "slow.started"), "");
    setTimeout(() => send({ msg: "slow done" }), 2000);
  } else {
    send({ msg: "running" });
  }
});
server.listen(Number(process.env.PORT || 8003), "127.0.0.1");
// Node exits at once on SIGTERM unless told otherwise: finish what is in progress first.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
