"""Drives a running `cascade serve` with the real distcompute-client 1.0.0 library.

Usage: python distcompute_flow.py URL STAGES
  URL     the tracker, e.g. http://127.0.0.1:8080
  STAGES  2 (a -> b) or 3 (a -> b -> c); the tracker was loaded with JOBS below and runs
          with the default flag threshold (5).

Every step is asserted; the last line printed is "ALL CHECKS PASSED" on success.
Written for and checked with: Python 3.11, distcompute-client 1.0.0, requests 2.x.
"""

import json
import sys

import requests
import distcompute_client as dc
from distcompute_client.errors import ServerError, WorkerTimedOutError, ZeroJobError

JOBS = ["job-1", {"url": "https://example.com/x.tar", "n": 2}, ["list", 3]]
THRESHOLD = 5


def expect(exception, call, *args):
    try:
        call(*args)
    except exception:
        return
    raise AssertionError(f"{call.__name__} should raise {exception.__name__}")


def v1(url, path):
    response = requests.get(url + path, timeout=10)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def main():
    url, stages = sys.argv[1], int(sys.argv[2])
    assert stages in (2, 3)

    # Registration: the client keeps only the first letter of the stage, lowercased.
    a = dc.init(url + "/", "Alpha", nickname="alice", verbose=False)
    assert a.stage == "a" and a.stage_name == "CPU" and a.project == "Python Flow", (a.stage, a.stage_name, a.project)
    assert a.token and a.display_name
    b = dc.init(url, "b", nickname="bob", verbose=False)
    assert b.stage_name == "GPU"
    expect(ValueError, dc.init, url, "f")  # 400: invalid stage
    if stages == 2:
        expect(ValueError, dc.init, url, "c")  # 400: disabled stage
    assert a.is_alive() and b.is_alive()

    # Counts and an empty stage.
    assert a.job_count() == 3, a.job_count()
    assert b.job_count() == 0
    expect(ZeroJobError, b.new_job)
    assert b.is_alive()  # the client's extra "Crashed" log did not hurt
    expect(ZeroJobError, b.complete_job, "nothing held")
    expect(ZeroJobError, b.flag_invalid_data)

    # Stage a: str, dict and list outputs.
    outputs = {1: "out-1", 2: {"k": [1, 2], "s": "caf\u00e9", "nested": {"x": None}}, 3: ["x", 1.5, True]}
    seen_inputs = {}
    for _ in range(3):
        a.new_job()
        a.log(f"working on {a.job_id}")
        seen_inputs[a.job_id] = a.job
        a.complete_job(outputs[a.job_id])
    assert seen_inputs == {1: "job-1", 2: JOBS[1], 3: JOBS[2]}, seen_inputs
    assert a.job_count() == 0 and b.job_count() == 3
    expect(ZeroJobError, a.new_job)
    expect(ZeroJobError, a.complete_job, "duplicate")

    # Stage b receives exactly what stage a sent.
    received = {}
    for _ in range(3):
        b.new_job()
        received[b.job_id] = b.job
        if stages == 3:
            b.complete_job(f"b-out-{b.job_id}")
        else:
            b.complete_job({"final": b.job_id})
    assert received == outputs, received
    expect(ZeroJobError, b.complete_job, "duplicate completion")

    if stages == 3:
        c = dc.init(url, "c", nickname="carol", verbose=False)
        assert c.stage_name == "CLIP" and c.job_count() == 3

        # Flags below the threshold re-open the job at c; at the threshold it goes back to b
        # with b's input intact.
        c.new_job()
        flagged = c.job_id
        for report in range(1, THRESHOLD):
            c.flag_invalid_data()
            assert c.job is None
            assert c.job_count() == 3, (report, c.job_count())
            c.new_job()
            assert c.job_id == flagged  # lowest number first: the same job again
        c.flag_invalid_data()
        assert c.job_count() == 2 and b.job_count() == 1
        b.new_job()
        assert b.job_id == flagged and b.job == outputs[flagged], (b.job_id, b.job)
        b.complete_job(f"b-out-{flagged}")
        assert c.job_count() == 3

        # bye re-opens the held job; the worker is gone afterwards.
        c.new_job()
        held = c.job_id
        c.bye()
        assert not c.is_alive()
        expect(WorkerTimedOutError, c.log, "still there?")
        expect(WorkerTimedOutError, c.new_job)
        c2 = dc.init(url, "c", nickname="carol", verbose=False)
        assert c2.job_count() == 3
        finals = {}
        for _ in range(3):
            c2.new_job()
            finals[c2.job_id] = c2.job
            c2.complete_job({"kept": c2.job_id})
        assert held in finals and finals == {n: f"b-out-{n}" for n in (1, 2, 3)}, finals
        expect(ZeroJobError, c2.new_job)

    # Final outputs are stored; the leaderboard credits every completion by nickname.
    stats = v1(url, "/v1/stats")
    assert stats["eta"]["done"] == 3 and stats["completion_percent"] == 100.0, stats
    for number in (1, 2, 3):
        job = v1(url, f"/v1/jobs/{number}")
        assert job["summary"]["state"] == "done", job
        loaded = JOBS[number - 1]
        expected_input = loaded if isinstance(loaded, str) else "<!json!>" + json.dumps(loaded, separators=(",", ":"))
        assert job["data"][0] == expected_input, job
    board = {row["nickname"]: row["jobs_completed"] for row in v1(url, "/v1/leaderboard")["items"]}
    expected = {"alice": 3, "bob": 3} if stages == 2 else {"alice": 3, "bob": 4, "carol": 3}
    assert board == expected, board

    # Worker pages of the JSON API know the workers by display name.
    worker = v1(url, f"/v1/workers/a/{a.display_name}")
    assert worker["nickname"] == "alice" and worker["jobs_completed"] == 3, worker
    a.bye()
    b.bye()
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    main()
