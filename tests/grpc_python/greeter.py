"""Real gRPC servers and a real gRPC xDS client (Python grpcio, C-core) for
tests/grpc_proxyless.rs.

    greeter.py serve NAME...            one server per NAME on 127.0.0.1:0;
                                        prints "NAME PORT" per server, then
                                        serves until stdin closes
    greeter.py call TARGET COUNT [KEY=VALUE...]
                                        COUNT unary RPCs to xds:///TARGET
                                        (GRPC_XDS_BOOTSTRAP must be set),
                                        alternating two methods, with the
                                        metadata given; prints a JSON object
                                        {"answers": {NAME: count}, "errors":
                                        {CODE: count}}, then keeps the
                                        channel until stdin closes

Every server answers any unary method with its own name, so the counts say
which backend each RPC reached. No generated code: requests and answers
are raw bytes.
"""

import json
import sys
from concurrent import futures

import grpc

METHODS = ["/helloworld.Greeter/SayHello", "/helloworld.Greeter/SayHelloAgain"]


class Named(grpc.GenericRpcHandler):
    def __init__(self, name):
        self.answer = name.encode()

    def service(self, handler_call_details):
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self.answer)


def serve(names):
    servers = []
    for name in names:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((Named(name),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        print(name, port, flush=True)
    # Serve until the test closes stdin (or ends).
    sys.stdin.read()
    for server in servers:
        server.stop(None)


def call(target, count, pairs):
    metadata = tuple(tuple(p.split("=", 1)) for p in pairs)
    answers, errors = {}, {}
    with grpc.insecure_channel("xds:///" + target) as channel:
        stubs = [channel.unary_unary(m) for m in METHODS]
        for i in range(count):
            try:
                reply = stubs[i % len(stubs)](
                    b"hi", metadata=metadata, timeout=30, wait_for_ready=True
                )
                name = reply.decode()
                answers[name] = answers.get(name, 0) + 1
            except grpc.RpcError as e:
                code = str(e.code())
                errors[code] = errors.get(code, 0) + 1
                errors["last"] = e.details()
        print(json.dumps({"answers": answers, "errors": errors}), flush=True)
        # Connected (to sluice too) until the test closes stdin.
        sys.stdin.read()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2:])
    elif sys.argv[1] == "call":
        call(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit("usage: greeter.py serve NAME... | call TARGET COUNT [KEY=VALUE...]")
