"""scripts/bench works end to end (tiny sizes, one run): every measurement
produces numbers from a real mount and a real reference, or fails the test.
No timing is asserted: the goals are reported by the bench, not checked here."""
import json
import os
import pathlib
import subprocess

SRC = pathlib.Path(os.environ.get("ECRFS_SRC", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("ECRFS_BUILD", SRC / "build"))


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(["/usr/bin/python3", str(SRC / "scripts" / "bench_run.py"),
                        "--build", str(BUILD), "--size-mib", "8", "--tags", "60",
                        "--rss-total-mib", "16", "--net-read-sizes-mib", "8",
                        "--push-layers", "2", "--push-layer-mib", "6", "--soak-tags", "40",
                        "--rootfs-dirs", "/usr/share/perl", "--repos", "30",
                        "--stress-ops", "300", "--runs", "1",
                        "--out", str(out),
                        "--workdir", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    res = {x["name"]: x for x in json.loads(out.read_text())["results"]}
    assert set(res) == {"cold_read", "warm_read", "tail_read", "list_tags", "rss_read", "push",
                        "push_layers", "soak_tags", "net_cold_read_8", "net_tail_read",
                        "net_list_tags", "net_push_layers", "rootfs", "list_repos",
                        "net_list_repos", "stress"}
    for name, row in res.items():
        assert "status" not in row, (name, row)
        assert row["network"] in ("loopback", "modelled", "none (cache)"), row
    for name in ("cold_read", "net_cold_read_8"):
        assert res[name]["ecrfs_s"] > 0 and res[name]["ref_curl_file_s"] > 0
        assert res[name]["ecrfs_cpu_s_per_gib"] >= 0 and res[name]["url_calls"] >= 1
    # 8 MiB at 64 MiB/s per GET: the modelled curl stream takes at least 0.125 s.
    assert res["net_cold_read_8"]["ref_curl_file_s"] >= 0.12
    # Reading the last MiB fetched something, and far less than the whole layer.
    assert 0 < res["tail_read"]["fetched_mib"] < 8
    # Both listings were counted from the emulator's log; 60 images fit one page.
    assert res["list_tags"]["ecrfs_api_calls"] >= 1 and res["list_tags"]["aws_cli_api_calls"] >= 1
    # An 8 MiB layer: one or two parts each way (5-10 MiB parts).
    assert 1 <= res["push"]["ecrfs_upload_parts"] <= 2
    assert res["push"]["ref_upload_parts"] == 1
    assert res["rss_read"]["peak_rss_mib"] > 0
    # The soak browsed every tag it seeded and reports the tables it kept.
    assert res["soak_tags"]["tags"] == 40 and res["soak_tags"]["tables"]["nodes"] > 0
    # Two 6 MiB layers and a config: one part each for curl, one or two for ecrfs.
    for name in ("push_layers", "net_push_layers"):
        assert res[name]["ref_upload_parts"] == 3
        assert 3 <= res[name]["ecrfs_upload_parts"] <= 5
        assert res[name]["peak_rss_mib"] > 0
    # TAG@rootfs: ls -R and the user's way measured; the small file of an
    # evicted layer cost one ranged GET; diff -r fetched each layer once.
    rf = res["rootfs"]
    assert rf["ecrfs_ls_s"] > 0 and rf["ref_umoci_unpack_s"] > 0 and rf["floor_curl_gzip_s"] > 0
    assert rf["cat_gets"] == 1 and 0 < rf["cat_fetched_kib"] <= 2048 + 64
    assert abs(rf["diff_fetched_mib"] - rf["distinct_layers_mib"]) < 1e-6
    assert 0 < rf["ls_hwm_mib"] and rf["small_file"].startswith("usr/share/perl/")
    # The checker ran the operations asked for and compared every byte.
    st = res["stress"]
    assert st["ops"] >= 300 and st["wrong_bytes"] == 0 and st["checker_ok"], st
    # 30 repositories fit one DescribeRepositories page each way.
    assert res["list_repos"]["ecrfs_api_calls"] >= 1
    assert "measurement" in r.stdout and "median of 1 runs" in r.stdout
    # Nothing stays mounted.
    assert str(tmp_path) not in pathlib.Path("/proc/mounts").read_text()
