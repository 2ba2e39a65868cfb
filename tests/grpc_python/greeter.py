"""Real gRPC servers and a real gRPC xDS client (Python grpcio, C-core) for
tests/grpc_proxyless.rs.

    greeter.py serve NAME...     one server per NAME on 127.0.0.1:0; prints
                                 "NAME PORT" per server, then serves until
                                 stdin closes; "stop NAME" on stdin stops
                                 that server gracefully (GOAWAY, in-flight
                                 RPCs finish) and answers "stopped NAME"
    greeter.py client TARGET     one channel to xds:///TARGET
                                 (GRPC_XDS_BOOTSTRAP must be set), kept
                                 until stdin closes, driven by commands on
                                 stdin, one per line, each answered with one
                                 line of JSON:
        call COUNT [KEY=VALUE...]
            COUNT unary RPCs alternating two methods, with that metadata:
            {"answers": {NAME: count}, "errors": {CODE: count, "last": ...}}
        until NAME STREAK [KEY=VALUE...]
            RPCs 10 ms apart until STREAK answers in a row come from NAME,
            for at most 60 s: {"reached": bool, "rpcs": n, "answers": {...}}

Every server answers any unary method with its own name, so the answers
say which backend each RPC reached. No generated code: requests and
answers are raw bytes.
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc

METHODS = ["/helloworld.Greeter/SayHello", "/helloworld.Greeter/SayHelloAgain"]


class Named(grpc.GenericRpcHandler):
    """Answers with its name; a server whose name starts with "flaky"
    fails every other RPC it gets with UNAVAILABLE (the first included),
    one whose name starts with "bad" fails every RPC."""

    def __init__(self, name):
        self.answer = name.encode()
        self.flaky = name.startswith("flaky")
        self.bad = name.startswith("bad")
        self.calls = 0
        self.lock = threading.Lock()

    def answer_one(self, request, context):
        if self.bad:
            context.abort(grpc.StatusCode.UNAVAILABLE, "bad: every RPC fails")
        if self.flaky:
            with self.lock:
                self.calls += 1
                fail = self.calls % 2 == 1
            if fail:
                context.abort(grpc.StatusCode.UNAVAILABLE, "flaky: every other RPC fails")
        return self.answer

    def service(self, handler_call_details):
        return grpc.unary_unary_rpc_method_handler(self.answer_one)


def serve(names):
    servers = {}
    for name in names:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((Named(name),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers[name] = server
        print(name, port, flush=True)
    # Serve until the test closes stdin (or ends).
    for line in sys.stdin:
        words = line.split()
        if len(words) == 2 and words[0] == "stop" and words[1] in servers:
            servers.pop(words[1]).stop(5).wait()
            print("stopped", words[1], flush=True)
    for server in servers.values():
        server.stop(None)


class Client:
    def __init__(self, channel):
        self.stubs = [channel.unary_unary(m) for m in METHODS]
        self.sent = 0

    def one(self, metadata):
        """The name of the backend that answered, or the error's code."""
        stub = self.stubs[self.sent % len(self.stubs)]
        self.sent += 1
        try:
            reply = stub(b"hi", metadata=metadata, timeout=30, wait_for_ready=True)
            return reply.decode(), None
        except grpc.RpcError as e:
            return None, e

    def call(self, count, metadata):
        answers, errors = {}, {}
        for _ in range(count):
            name, err = self.one(metadata)
            if err is None:
                answers[name] = answers.get(name, 0) + 1
            else:
                code = str(err.code())
                errors[code] = errors.get(code, 0) + 1
                errors["last"] = err.details()
        return {"answers": answers, "errors": errors}

    def until(self, want, streak, metadata):
        answers, run, rpcs = {}, 0, 0
        deadline = time.monotonic() + 60
        while run < streak and time.monotonic() < deadline:
            name, err = self.one(metadata)
            rpcs += 1
            key = name if err is None else str(err.code())
            answers[key] = answers.get(key, 0) + 1
            run = run + 1 if name == want else 0
            time.sleep(0.01)
        return {"reached": run >= streak, "rpcs": rpcs, "answers": answers}


def metadata_of(pairs):
    return tuple(tuple(p.split("=", 1)) for p in pairs)


def client(target):
    with grpc.insecure_channel("xds:///" + target) as channel:
        c = Client(channel)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "call":
                out = c.call(int(words[1]), metadata_of(words[2:]))
            elif words[0] == "until":
                out = c.until(words[1], int(words[2]), metadata_of(words[3:]))
            else:
                out = {"bad_command": line.strip()}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2:])
    elif sys.argv[1] == "client":
        client(sys.argv[2])
    else:
        sys.exit("usage: greeter.py serve NAME... | client TARGET")
