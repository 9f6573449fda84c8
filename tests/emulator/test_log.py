"""The request log tests count calls from."""
import json
import os


def test_log_records_calls(emu, client, repo):
    emu.reset_log()
    assert emu.log() == []
    client.call("ListImages", repositoryName=repo)
    client.raw("DescribeImages", {"repositoryName": "no/such"})
    emu.config(tiny_pages=0)  # control calls are not logged
    log = emu.log()
    assert [e["op"] for e in log] == ["ListImages", "DescribeImages"]
    ok, bad = log
    for k in ("ts", "op", "account", "region", "repo", "status", "code", "bytes_in",
              "bytes_out", "range"):
        assert k in ok
    assert ok["account"] == "111111111111" and ok["region"] == "us-east-1"
    assert ok["repo"] == repo and ok["status"] == 200 and ok["code"] == ""
    assert ok["bytes_in"] > 0 and ok["bytes_out"] > 0
    assert bad["status"] == 400 and bad["code"] == "RepositoryNotFoundException"
    assert emu.count("ListImages", repo=repo) == 1
    # The same lines are in STATE_DIR/requests.jsonl.
    with open(os.path.join(emu.state_dir, "requests.jsonl")) as f:
        assert [json.loads(l)["op"] for l in f] == ["ListImages", "DescribeImages"]


def test_log_is_thread_safe(emu, repo):
    import threading
    import ecrclient
    emu.reset_log()

    def work():
        c = ecrclient.client_for(emu)
        for _ in range(20):
            c.call("ListImages", repositoryName=repo)
        c.close()
    ts = [threading.Thread(target=work) for _ in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert emu.count("ListImages", repo=repo, status=200) == 100
