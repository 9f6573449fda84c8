"""TAG@rootfs and TAG@layers through a real mount on the ECR emulator.
Images are built at test time (umoci from this machine's files, Python's
tarfile for whiteouts, opaque directories, PAX/GNU names, devices, hardlinks
into lower layers), pushed, mounted; the independent reference is `umoci
unpack` of the same layout (diff -r and an lstat walk). The emulator's
request log shows what each step downloaded."""
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, HERE)

import ecrclient  # noqa: E402
from emu import Emulator  # noqa: E402
from mount import ECRFS, mounts  # noqa: E402
import test_rootfs_core as core  # noqa: E402
from test_rootfs_core import (umoci_image, tarfile_image, umoci, add_image, tar_layer,  # noqa: E402,F401
                              manifest, blob_path, compare, groups, TYPES, D, F, L)

pytestmark = [
    pytest.mark.skipif(not os.path.exists(ECRFS), reason="ecrfs not built"),
    pytest.mark.skipif(not os.path.exists(core.UMOCI), reason="umoci not installed"),
]


def layer_sizes(layout, tag):
    _, m = manifest(layout, tag)
    return [l["size"] for l in m["layers"]]


def blob_bytes(emu):
    return sum(e.get("bytes_out") or 0 for e in emu.log() if e.get("op") == "BlobGet")


def walk(root):
    """The lstat walk of a tree in core.reference's form (own xattrs only)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rec = {"type": TYPES[stat.S_IFMT(st.st_mode)], "mode": stat.S_IMODE(st.st_mode),
                   "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns // 10**9,
                   "nsec": st.st_mtime_ns % 10**9, "nlink": st.st_nlink, "group": st.st_ino,
                   "xattrs": {x: os.getxattr(p, x, follow_symlinks=False).hex()
                              for x in os.listxattr(p, follow_symlinks=False)
                              if not x.startswith("user.ecr.")}}
            if rec["type"] == "f":
                rec["size"] = st.st_size
                rec["sha256"] = core.sha256_file(p)
            if rec["type"] == "l":
                rec["link"] = os.readlink(p)
            if rec["type"] in "cb":
                rec["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            out[os.path.relpath(p, root)] = rec
    return out


@pytest.fixture(scope="module")
def pushed(emulator, umoci_image, tarfile_image):
    """Each image in its own repository (BlobGet log entries name the repo)."""
    ecrclient.push_layout(emulator, umoci_image, "rfs/umoci", "v1")
    ecrclient.push_layout(emulator, tarfile_image, "rfs/py", "py")
    if os.path.exists(os.path.join(tarfile_image, "index.json")) and shutil.which("zstd"):
        ecrclient.push_layout(emulator, tarfile_image, "rfs/zstd", "py-zstd")
    return {"emu": emulator, "umoci": umoci_image, "py": tarfile_image}


@pytest.fixture
def mount(pushed, tmp_path):
    with mounts(pushed["emu"], tmp_path) as make:
        yield make


def first_ls(m, emu, repo, tag, layout, ref_tag=None):
    """ls -R of TAG@rootfs: each layer downloaded once."""
    emu.reset_log()
    root = m.repo(repo, tag + "@rootfs")
    r = subprocess.run(["ls", "-R", root], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert blob_bytes(emu) == sum(layer_sizes(layout, ref_tag or tag))
    return root


def check_against_umoci(root, layout, tag, tmp, made_parents=()):
    ref = core.reference(layout, tag, str(tmp))
    diffs = compare(ref, walk(root), made_parents)
    assert not diffs, "\n".join(diffs[:40]) + f"\n({len(diffs)} differences)"
    unpacked = os.path.join(str(tmp), "ref-" + tag, "rootfs")
    r = subprocess.run(["diff", "-r", "--no-dereference", unpacked, root], capture_output=True,
                       text=True, timeout=600)
    # diff reports every special file, even when both sides are the same kind.
    same = re.compile(r"^File (.*) is a (.*) while file (.*) is a \2$")
    bad = [l for l in r.stdout.splitlines() if not same.match(l)]
    assert r.returncode in (0, 1) and not bad and not r.stderr, r.stdout[-3000:] + r.stderr[-2000:]
    return ref


def test_umoci_image_matches_unpack(pushed, mount, tmp_path):
    emu = pushed["emu"]
    m = mount()
    root = first_ls(m, emu, "rfs/umoci", "v1", pushed["umoci"])
    ref = check_against_umoci(root, pushed["umoci"], "v1", tmp_path)
    assert len(ref) > 200 and len(groups(ref, "ino")) >= 2
    assert os.getxattr(m.repo("rfs/umoci", "v1@rootfs"), "user.ecr.rootfs_state") == b"ready (built)"
    lay = os.getxattr(os.path.join(root, "srv/owned"), "user.ecr.layer").decode()
    layers = manifest(pushed["umoci"], "v1")[1]["layers"]
    assert lay.split()[1] == layers[int(lay.split()[0])]["digest"]
    if core.ROOT:
        assert os.getxattr(os.path.join(root, "srv/ping-like"), "security.capability") == core.CAP
    # The views are never listed by their parent, and user.ecr.views names them.
    assert not any("@" in n for n in os.listdir(m.repo("rfs/umoci")))
    views = os.getxattr(m.repo("rfs/umoci", "v1"), "user.ecr.views").decode().split(",")
    assert "rootfs" in views and "layers" in views
    stats = json.load(open(m.path(".ecrfs", "stats")))["rootfs"]
    assert stats["index_builds"] == len(layers) and stats["index_bytes"] > 0


def test_tarfile_image_matches_unpack(pushed, mount, tmp_path):
    m = mount()
    root = first_ls(m, pushed["emu"], "rfs/py", "py", pushed["py"])
    check_against_umoci(root, pushed["py"], "py", tmp_path, made_parents={"data"})
    assert sorted(os.listdir(os.path.join(root, "opq"))) == ["new"]
    assert open(os.path.join(root, "dup"), "rb").read() == b"second"
    assert os.path.samefile(os.path.join(root, "lowerlink"), os.path.join(root, "etc/conf-link"))


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd not installed")
def test_zstd_layers_as_gzip(pushed, mount):
    m = mount()
    a = walk(m.repo("rfs/py", "py@rootfs"))
    b = walk(m.repo("rfs/zstd", "py-zstd@rootfs"))
    strip = lambda t: {p: {k: v for k, v in r.items() if k != "group"} for p, r in t.items()}
    assert strip(a) == strip(b)
    assert groups(a, "group") != [] and len(groups(a, "group")) == len(groups(b, "group"))


def test_layers_view_and_read_only(pushed, mount):
    m = mount()
    lay = m.repo("rfs/py", "py@layers")
    assert sorted(os.listdir(lay)) == ["0", "1", "2"]
    names = set()
    for d, dirs, files in os.walk(os.path.join(lay, "1")):
        names |= {os.path.relpath(os.path.join(d, n), os.path.join(lay, "1")) for n in dirs + files}
    assert {"opq/.wh..wh..opq", "etc/.wh.conf", ".wh.gone", "gone/y"} <= names
    assert not os.path.exists(os.path.join(lay, "3"))
    # The same image by digest.
    hexd = manifest(pushed["py"], "py")[0].split(":")[1]
    bydigest = m.repo("rfs/py", f"@sha256-{hexd}@rootfs")
    assert open(os.path.join(bydigest, "dup"), "rb").read() == b"second"
    assert sorted(os.listdir(bydigest)) == sorted(os.listdir(m.repo("rfs/py", "py@rootfs")))
    root = m.repo("rfs/py", "py@rootfs")
    for fn in (lambda: os.mkdir(os.path.join(root, "newdir")),
               lambda: open(os.path.join(root, "newfile"), "w"),
               lambda: open(os.path.join(root, "dup"), "w"),
               lambda: os.unlink(os.path.join(root, "dup")),
               lambda: os.chmod(os.path.join(root, "dup"), 0o600),
               lambda: os.rename(os.path.join(root, "dup"), os.path.join(root, "dup2"))):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS, e.value


def test_span_reads_and_local_index(pushed, mount, tmp_path):
    """A new mount whose cache has the indexes but no blobs: listing costs
    no blob GET, a small file one ranged GET of at most ~2 MiB."""
    emu = pushed["emu"]
    m = mount(name="a")
    first_ls(m, emu, "rfs/umoci", "v1", pushed["umoci"])
    want = open(os.path.join(m.repo("rfs/umoci", "v1@rootfs"), "srv/owned"), "rb").read()
    m.stop()
    cache2 = str(tmp_path / "b-cache")
    os.makedirs(cache2)
    shutil.copytree(os.path.join(m.cache_dir, "index"), os.path.join(cache2, "index"))
    m2 = mount(name="b", cache_dir=cache2)
    emu.reset_log()
    root = m2.repo("rfs/umoci", "v1@rootfs")
    subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
    assert emu.count("BlobGet") == 0
    assert os.getxattr(m2.repo("rfs/umoci", "v1@rootfs"), "user.ecr.rootfs_state") == b"ready (local index)"
    assert open(os.path.join(root, "srv/owned"), "rb").read() == want
    gets = [e for e in emu.log() if e.get("op") == "BlobGet"]
    assert len(gets) == 1 and gets[0]["bytes_out"] <= (2 << 20) + 65536, gets


def test_multiarch_index(emulator, mount, tmp_path):
    import layouts
    layout = str(tmp_path / "layout")
    layouts.make_multiarch_index(layout, "m1", platforms=("linux/amd64", "linux/arm64"))
    # An attestation entry (unknown/unknown) is left out.
    idx = json.load(open(os.path.join(layout, "index.json")))
    top = [d for d in idx["manifests"] if d["annotations"][layouts.REF] == "m1"][0]
    data = json.loads(open(blob_path(layout, top["digest"]), "rb").read())
    att = dict(data["manifests"][0], platform={"os": "unknown", "architecture": "unknown"})
    data["manifests"].append(att)
    raw = json.dumps(data).encode()
    d = core.write_blob(layout, raw)
    top.update(digest=d, size=len(raw))
    json.dump(idx, open(os.path.join(layout, "index.json"), "w"))
    ecrclient.push_layout(emulator, layout, "rfs/multi", "m1")
    m = mount()
    root = m.repo("rfs/multi", "m1@rootfs")
    assert sorted(os.listdir(root)) == ["linux_amd64", "linux_arm64"]
    assert open(os.path.join(root, "linux_arm64/etc/platform")).read() == "linux/arm64\n"
    assert os.listdir(m.repo("rfs/multi", "m1@layers", "linux_amd64")) == ["0"]


def test_corrupt_layer_during_build(emulator, mount, tmp_path):
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    data = tar_layer([D("etc"), F("etc/x", os.urandom(300000))], core.tarfile.GNU_FORMAT)
    add_image(layout, "bad", [(data, "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/bad", "bad")
    digest = manifest(layout, "bad")[1]["layers"][0]["digest"]
    emulator.corrupt_blob(digest, offset=1000)
    try:
        m = mount()
        with pytest.raises(OSError) as e:
            os.listdir(m.repo("rfs/bad", "bad@rootfs"))
        assert e.value.errno == errno.EIO
        assert not os.path.exists(os.path.join(m.cache_dir, "index", digest[7:]))
        st = os.getxattr(m.repo("rfs/bad", "bad@rootfs"), "user.ecr.rootfs_state").decode()
        assert st.startswith("error")
    finally:
        emulator.corrupt_blob(digest, offset=1000)


def test_offline_remount(tmp_path, umoci_image):
    """With the registry gone, an indexed image still lists and reads."""
    emu = Emulator(state_dir=str(tmp_path / "emu"))
    emu.start()
    try:
        ecrclient.push_layout(emu, umoci_image, "rfs/off", "v1")
        with mounts(emu, tmp_path) as make:
            m = make(name="on")
            root = m.repo("rfs/off", "v1@rootfs")
            subprocess.run(["ls", "-R", root], check=True, capture_output=True, timeout=300)
            want = open(os.path.join(root, "srv/owned"), "rb").read()
            m.stop()
            emu.stop()
            m2 = make(name="off", cache_dir=m.cache_dir)
            root = m2.repo("rfs/off", "v1@rootfs")
            assert "srv" in os.listdir(root)
            assert open(os.path.join(root, "srv/owned"), "rb").read() == want
    finally:
        emu.stop()
        emu.cleanup()


def ldd_files(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    files = [binary]
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                files.append(p)
    return files


def push_sh_image(emulator, tmp_path):
    """An image of this machine's /bin/sh and the libraries ldd names."""
    sh = os.path.realpath("/bin/sh")
    layout, bundle = str(tmp_path / "layout"), str(tmp_path / "bundle")
    umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:sh")
    umoci("unpack", "--image", f"{layout}:sh", bundle)
    r = os.path.join(bundle, "rootfs")
    for f in ldd_files(sh):
        os.makedirs(r + os.path.dirname(f), exist_ok=True)
        shutil.copy2(os.path.realpath(f), r + f)
    os.makedirs(r + "/bin", exist_ok=True)
    if not os.path.exists(r + "/bin/sh"):
        shutil.copy2(sh, r + "/bin/sh")
    umoci("repack", "--image", f"{layout}:sh", bundle)
    ecrclient.push_layout(emulator, layout, "rfs/sh", "sh")


def test_chroot_runs_shell(emulator, mount, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    push_sh_image(emulator, tmp_path)
    m = mount()
    out = subprocess.run(["chroot", m.repo("rfs/sh", "sh@rootfs"), "/bin/sh", "-c", "echo ok"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and "Operation not permitted" in out.stderr:
        pytest.skip("chroot not permitted here: " + out.stderr)
    assert out.stdout == "ok\n", out.stderr


def test_podman_rootfs(emulator, mount, tmp_path):
    if not shutil.which("podman"):
        pytest.skip("podman is not installed on this machine")
    push_sh_image(emulator, tmp_path)
    m = mount()
    root = m.repo("rfs/sh", "sh@rootfs")
    out = subprocess.run(["podman", "run", "--rm", "--rootfs", root + ":O", "/bin/sh", "-c",
                          "echo ok"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0 and ("cgroup" in out.stderr or "permission" in out.stderr.lower()):
        pytest.skip("podman cannot run containers here: " + out.stderr[-500:])
    assert out.stdout == "ok\n", out.stderr


def test_interrupt_ends_wait_not_build(emulator, mount, tmp_path):
    """Ctrl-C of the first ls returns at once; the build goes on and shows
    its progress; a retry after it is instant."""
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    data = tar_layer([D("etc"), F("etc/blob", os.urandom(3 << 20)), F("etc/small", b"s\n")],
                     core.tarfile.GNU_FORMAT)
    add_image(layout, "slow", [(data, "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/slow", "slow")
    m = mount()
    root = m.repo("rfs/slow", "slow@rootfs")
    with emulator.network(get_rate=256 << 10):
        p = subprocess.Popen(["ls", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        t0 = time.monotonic()
        p.send_signal(2)
        p.wait(10)
        assert time.monotonic() - t0 < 2
        state = os.getxattr(root, "user.ecr.rootfs_state").decode()
        assert state.startswith("building "), state
        deadline = time.monotonic() + 120
        while state != "ready (built)" and time.monotonic() < deadline:
            time.sleep(0.3)
            state = os.getxattr(root, "user.ecr.rootfs_state").decode()
        assert state == "ready (built)"
    t0 = time.monotonic()
    assert sorted(os.listdir(os.path.join(root, "etc"))) == ["blob", "small"]
    assert time.monotonic() - t0 < 2
    assert open(os.path.join(root, "etc/small")).read() == "s\n"


def test_corrupt_span_then_right_bytes(emulator, mount, tmp_path):
    """A span that fails its sha256 answers EIO and is fetched again on the
    next read."""
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    data = tar_layer([D("etc"), F("etc/big", os.urandom(3 << 20)), F("etc/small", b"small\n")],
                     core.tarfile.GNU_FORMAT)
    add_image(layout, "spans", [(data, "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/spans", "spans")
    m = mount(name="a")
    subprocess.run(["ls", "-R", m.repo("rfs/spans", "spans@rootfs")], check=True,
                   capture_output=True)
    m.stop()
    cache2 = str(tmp_path / "b-cache")
    os.makedirs(cache2)
    shutil.copytree(os.path.join(m.cache_dir, "index"), os.path.join(cache2, "index"))
    m2 = mount(name="b", cache_dir=cache2)
    layer = manifest(layout, "spans")[1]["layers"][0]
    path = os.path.join(m2.repo("rfs/spans", "spans@rootfs"), "etc/small")
    off = layer["size"] - 100  # in the last span, with etc/small
    emulator.corrupt_blob(layer["digest"], offset=off)
    try:
        with pytest.raises(OSError) as e:
            open(path, "rb").read()
        assert e.value.errno == errno.EIO
    finally:
        emulator.corrupt_blob(layer["digest"], offset=off)
    # The blob reader may have fetched the whole blob and marked its digest
    # bad for a minute; nothing wrong was kept: a remount reads it right.
    m2.stop()
    m3 = mount(name="c", cache_dir=cache2)
    path = os.path.join(m3.repo("rfs/spans", "spans@rootfs"), "etc/small")
    assert open(path, "rb").read() == b"small\n"


def test_unmount_during_build(emulator, mount, tmp_path):
    """An unmount while layers are being indexed stops the build: the daemon
    exits cleanly (the fixture checks its status) and saves no index."""
    layout = str(tmp_path / "layout")
    umoci("init", "--layout", layout)
    data = tar_layer([D("etc"), F("etc/blob", os.urandom(3 << 20))], core.tarfile.GNU_FORMAT)
    add_image(layout, "unmount", [(data, "gzip")])
    ecrclient.push_layout(emulator, layout, "rfs/unmount", "unmount")
    m = mount()
    with emulator.network(get_rate=256 << 10):
        p = subprocess.Popen(["ls", m.repo("rfs/unmount", "unmount@rootfs")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        p.kill()
        p.wait(10)
        t0 = time.monotonic()
        assert m.stop() == 0
        assert time.monotonic() - t0 < 20
    digest = manifest(layout, "unmount")[1]["layers"][0]["digest"]
    assert not os.path.exists(os.path.join(m.cache_dir, "index", digest[7:]))
