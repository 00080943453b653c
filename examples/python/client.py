#!/usr/bin/env python3
"""A short grpcio client for the Shotgun Cache query-server: a Find, a deep-link Find and a Watch.

Stubs are generated at run time from the repository's proto/ directory with grpc_tools.protoc into a
temporary directory, so nothing generated is committed.

    python3 examples/python/client.py --target 127.0.0.1:50051 [--token TOKEN] [--watch-count 3]

The functions below (find_shots, find_shots_with_sequence, watch_changes) are also used by
examples/python/test_client.py.
"""

import argparse
import importlib
import os
import sys
import tempfile

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs():
    """Generates the shotgun_cache.v1 Python modules into a temp dir and imports them."""
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="shotgun-cache-stubs-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = [
        "shotgun_cache/v1/types.proto",
        "shotgun_cache/v1/query.proto",
    ]
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + protos) != 0:
        raise RuntimeError("grpc_tools.protoc failed to compile the protos in " + PROTO_ROOT)
    sys.path.insert(0, out)
    pb = importlib.import_module("shotgun_cache.v1.query_pb2")
    types = importlib.import_module("shotgun_cache.v1.types_pb2")
    rpc = importlib.import_module("shotgun_cache.v1.query_pb2_grpc")
    return pb, types, rpc


def connect(target, token=None):
    """A QueryService stub (with a bearer token on every call when given)."""
    import grpc

    pb, types, rpc = load_stubs()
    channel = grpc.insecure_channel(target)
    if token:
        header = ("authorization", f"Bearer {token}")

        class Auth(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
            def intercept_unary_unary(self, cont, details, request):
                return cont(_Details(details, header), request)

            def intercept_unary_stream(self, cont, details, request):
                return cont(_Details(details, header), request)

        channel = grpc.intercept_channel(channel, Auth())
    return pb, types, rpc.QueryServiceStub(channel)


class _Details:
    """ClientCallDetails with one extra metadata pair."""

    def __init__(self, details, header):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = list(details.metadata or []) + [header]
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


def value(v):
    """A shotgun_cache.v1.Value as a plain Python value."""
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "entity_value":
        e = v.entity_value
        return {"type": e.type, "id": e.id, "name": e.name if e.HasField("name") else None}
    if kind == "entities_value":
        return [{"type": e.type, "id": e.id, "name": e.name if e.HasField("name") else None} for e in v.entities_value.refs]
    if kind == "date_value":
        d = v.date_value
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    if kind == "timestamp_value":
        return v.timestamp_value.ToJsonString()
    return getattr(v, kind)


def record(r):
    out = {"type": r.type, "id": r.id}
    out.update({k: value(v) for k, v in r.fields.items()})
    return out


def find_shots(pb, types, stub, limit=5):
    """Find: the first shots by id with their code and status."""
    req = pb.FindRequest(
        entity_type="Shot",
        filter=types.Filter(condition=types.Condition(
            path="id", operator=types.OPERATOR_GREATER_THAN, values=[types.Value(int_value=0)])),
        fields=["code", "sg_status_list"],
        sorts=[pb.Sort(field="id", direction=pb.SORT_DIRECTION_ASC)],
        limit=limit,
    )
    return [record(r) for r in stub.Find(req, timeout=10).records]


def find_shots_with_sequence(pb, types, stub, sequence_code=None, limit=5):
    """Deep-link Find: shots with their sequence's code, optionally only those of one sequence."""
    if sequence_code is None:
        cond = types.Condition(path="sg_sequence", operator=types.OPERATOR_IS_NOT,
                               values=[types.Value(null_value=0)])
    else:
        cond = types.Condition(path="sg_sequence.Sequence.code", operator=types.OPERATOR_IS,
                               values=[types.Value(string_value=sequence_code)])
    req = pb.FindRequest(
        entity_type="Shot",
        filter=types.Filter(condition=cond),
        fields=["code", "sg_sequence", "sg_sequence.Sequence.code"],
        sorts=[pb.Sort(field="id")],
        limit=limit,
    )
    return [record(r) for r in stub.Find(req, timeout=10).records]


def watch_changes(pb, stub, count=3, seconds=10.0, after_seq=None, entity_types=("Shot",)):
    """Watch: up to `count` changes (or until `seconds` pass), starting after `after_seq`
    (default: the ten latest journal entries). Returns (changes, heartbeats)."""
    import grpc

    if after_seq is None:
        head = stub.SyncStatus(pb.SyncStatusRequest(), timeout=10).journal_head
        after_seq = max(head - 10, 0)
    req = pb.WatchRequest(entity_types=list(entity_types), after_seq=after_seq, heartbeat_secs=1)
    stream = stub.Watch(req, timeout=seconds)
    changes, heartbeats = [], []
    try:
        for ev in stream:
            if ev.WhichOneof("kind") == "change":
                c = ev.change
                changes.append({
                    "seq": c.seq,
                    "op": pb.ChangeOp.Name(c.op),
                    "type": c.entity_type,
                    "id": c.entity_id,
                    "changed": list(c.changed_fields),
                })
                if len(changes) >= count:
                    break
            else:
                heartbeats.append(ev.heartbeat.resume_after_seq)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    return changes, heartbeats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:50051", help="query-server gRPC address")
    ap.add_argument("--token", default=os.environ.get("SHOTGUN_CACHE_TOKEN"), help="bearer token, if auth is on")
    ap.add_argument("--watch-count", type=int, default=3, help="changes to wait for in the Watch")
    ap.add_argument("--watch-seconds", type=float, default=10.0, help="longest Watch wait")
    args = ap.parse_args()

    pb, types, stub = connect(args.target, args.token)
    print("Find Shot (first 5 by id):")
    for r in find_shots(pb, types, stub):
        print("  ", r)
    print("Deep-link Find Shot with sg_sequence.Sequence.code:")
    for r in find_shots_with_sequence(pb, types, stub):
        print("  ", r)
    print(f"Watch Shot (up to {args.watch_count} changes or {args.watch_seconds}s):")
    changes, heartbeats = watch_changes(pb, stub, args.watch_count, args.watch_seconds)
    for c in changes:
        print("  ", c)
    print(f"   ({len(changes)} changes, {len(heartbeats)} heartbeats)")


if __name__ == "__main__":
    main()
