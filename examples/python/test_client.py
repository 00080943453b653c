#!/usr/bin/env python3
"""Checks examples/python/client.py against a query-server over the fixture store
(query-server/examples/fixture_server.rs: 200 shots sh0001..sh0200, shot i in sequence
SEQ_0{(i % 5) + 1}, statuses cycling ip/fin/wtg/omt, a shot change journaled every 300 ms).

    python3 examples/python/test_client.py --target HOST:PORT

Prints one line per test and a summary line "N passed, N failed"; exits non-zero on failure.
"""

import argparse
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import client  # noqa: E402

STATUSES = ["ip", "fin", "wtg", "omt"]


def test_find(pb, types, stub):
    rows = client.find_shots(pb, types, stub, limit=5)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5], rows
    assert rows[0]["type"] == "Shot"
    assert [r["code"] for r in rows] == [f"sh{i:04d}" for i in range(1, 6)], rows
    assert [r["sg_status_list"] for r in rows] == [STATUSES[i % 4] for i in range(1, 6)], rows


def test_deep_link_find(pb, types, stub):
    rows = client.find_shots_with_sequence(pb, types, stub, sequence_code="SEQ_03", limit=100)
    want = [i for i in range(1, 201) if i % 5 == 2]
    assert [r["id"] for r in rows] == want, [r["id"] for r in rows]
    for r in rows:
        assert r["sg_sequence.Sequence.code"] == "SEQ_03", r
        assert r["sg_sequence"]["type"] == "Sequence" and r["sg_sequence"]["id"] == 3, r
        assert r["sg_sequence"]["name"] == "SEQ_03", r


def test_watch(pb, types, stub):
    changes, _ = client.watch_changes(pb, stub, count=8, seconds=20.0, after_seq=0)
    assert len(changes) == 8, changes
    seqs = [c["seq"] for c in changes]
    assert seqs == sorted(set(seqs)), seqs
    assert all(c["type"] == "Shot" and c["op"] == "CHANGE_OP_UPDATE" for c in changes), changes
    assert all(c["changed"] == ["sg_cut_in"] for c in changes), changes
    # Resuming after the third change delivers exactly the fourth onwards.
    again, _ = client.watch_changes(pb, stub, count=5, seconds=20.0, after_seq=seqs[2])
    assert [c["seq"] for c in again] == seqs[3:8], (again, seqs)


def test_bad_input_names_the_field(pb, types, stub):
    import grpc

    req = pb.FindRequest(entity_type="Shot", fields=["no_such_field"])
    try:
        stub.Find(req, timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert "Shot.no_such_field" in e.details(), e.details()
    else:
        raise AssertionError("an unknown field was accepted")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    args = ap.parse_args()
    pb, types, stub = client.connect(args.target)
    tests = [test_find, test_deep_link_find, test_watch, test_bad_input_names_the_field]
    passed = failed = 0
    for t in tests:
        try:
            t(pb, types, stub)
        except Exception:
            failed += 1
            print(f"FAILED {t.__name__}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok     {t.__name__}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
