// A real grpc-js xDS client (@grpc/grpc-js-xds) for tests/grpc_proxyless.rs,
// speaking the same line protocol as ../grpc_python/greeter.py's client:
//
//   node client.js TARGET      one channel to xds:///TARGET (GRPC_XDS_BOOTSTRAP
//                              must be set), driven by commands on stdin,
//                              one per line, each answered with one line of JSON:
//     call COUNT [KEY=VALUE...]
//         COUNT unary RPCs alternating two methods, with that metadata:
//         {"answers": {NAME: count}, "errors": {CODE: count, "last": ...}}
//     until NAME STREAK [KEY=VALUE...]
//         RPCs 10 ms apart until STREAK answers in a row come from NAME,
//         for at most 60 s: {"reached": bool, "rpcs": n, "answers": {...}}
//
// Error codes are written as Python's grpcio writes them
// ("StatusCode.UNAVAILABLE"), so both clients' answers read the same.
// No generated code: requests and answers are raw bytes.

"use strict";

const grpc = require("@grpc/grpc-js");
const xds = require("@grpc/grpc-js-xds");
const readline = require("node:readline");

const METHODS = ["/helloworld.Greeter/SayHello", "/helloworld.Greeter/SayHelloAgain"];
const identity = (b) => b;

xds.register();
const target = process.argv[2];
const client = new grpc.Client(`xds:///${target}`, grpc.credentials.createInsecure());
let sent = 0;

function codeName(code) {
  const name = Object.keys(grpc.status).find((k) => grpc.status[k] === code);
  return `StatusCode.${name || code}`;
}

function metadataOf(pairs) {
  const md = new grpc.Metadata();
  for (const p of pairs) {
    const at = p.indexOf("=");
    md.add(p.slice(0, at), p.slice(at + 1));
  }
  return md;
}

// One RPC: [name, null] or [null, error].
function one(pairs) {
  const method = METHODS[sent % METHODS.length];
  sent += 1;
  const deadline = new Date(Date.now() + 30000);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method,
      identity,
      identity,
      Buffer.from("hi"),
      metadataOf(pairs),
      { deadline, waitForReady: true },
      (err, reply) => resolve(err ? [null, err] : [reply.toString(), null]),
    );
  });
}

async function call(count, pairs) {
  const answers = {};
  const errors = {};
  for (let i = 0; i < count; i++) {
    const [name, err] = await one(pairs);
    if (err === null) {
      answers[name] = (answers[name] || 0) + 1;
    } else {
      const code = codeName(err.code);
      errors[code] = (errors[code] || 0) + 1;
      errors.last = err.details;
    }
  }
  return { answers, errors };
}

async function until(want, streak, pairs) {
  const answers = {};
  let run = 0;
  let rpcs = 0;
  const deadline = Date.now() + 60000;
  while (run < streak && Date.now() < deadline) {
    const [name, err] = await one(pairs);
    rpcs += 1;
    const key = err === null ? name : codeName(err.code);
    answers[key] = (answers[key] || 0) + 1;
    run = name === want ? run + 1 : 0;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { reached: run >= streak, rpcs, answers };
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const words = line.split(/\s+/).filter((w) => w.length > 0);
    if (words.length === 0) continue;
    let out;
    if (words[0] === "call") {
      out = await call(parseInt(words[1], 10), words.slice(2));
    } else if (words[0] === "until") {
      out = await until(words[1], parseInt(words[2], 10), words.slice(3));
    } else {
      out = { bad_command: line.trim() };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  }
  client.close();
  process.exit(0);
}

main();
