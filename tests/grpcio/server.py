"""A gRPC server on gRPC C-core (Debian's python3-grpcio), for tests/grpc.rs.

Serves grpc.health.v1.Health/Check over h2c on 127.0.0.1, answering SERVING.
Prints `port N` once listening, then `call <authorization> <outcome>` per call.
A line `revoke trailers-only` or `revoke after-headers` on stdin revokes the
token of the last call: a call carrying it is refused with UNAUTHENTICATED,
as a trailers-only answer, or as response headers followed by trailers.
It stops when stdin closes.
"""
import sys
import threading
from concurrent import futures

import grpc

revoked = {}  # authorization -> how its refusal is sent
last = [None]
lock = threading.Lock()


def check(request, context):
    authorization = dict(context.invocation_metadata()).get("authorization", "")
    with lock:
        last[0] = authorization
        form = revoked.get(authorization)
    print(f"call {authorization} {form or 'served'}", flush=True)
    if form == "after-headers":
        context.send_initial_metadata((("x-refusal", "after-headers"),))
    if form:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "token revoked")
    return b"\x08\x01"  # HealthCheckResponse { status: SERVING }


handler = grpc.method_handlers_generic_handler(
    "grpc.health.v1.Health",
    {"Check": grpc.unary_unary_rpc_method_handler(check)},
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"port {port}", flush=True)
for line in sys.stdin:
    _, form = line.split()
    with lock:
        revoked[last[0]] = form
    print(f"revoked {form}", flush=True)
server.stop(0)
