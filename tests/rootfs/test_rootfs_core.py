"""The rootfs core against an independent reference: images built at test
time (umoci from this machine's /usr, and Python's tarfile for whiteouts,
opaque directories, PAX and GNU headers, devices), indexed and merged by
rootfs-dump, compared with `umoci unpack` of the same image by an lstat walk
and file hashes. Nothing may differ."""
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import tarfile

import pytest

BUILD = os.environ.get("ECRFS_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
DUMP = os.path.join(BUILD, "fs", "rootfs", "rootfs-dump")
UMOCI = "/usr/bin/umoci"
ROOT = os.geteuid() == 0

pytestmark = [
    pytest.mark.skipif(not os.path.exists(DUMP), reason="rootfs-dump not built"),
    pytest.mark.skipif(not os.path.exists(UMOCI), reason="umoci not installed"),
]

TYPES = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
         stat.S_IFBLK: "b", stat.S_IFIFO: "p"}
# security.capability v2: cap_net_raw in permitted, effective bit set.
CAP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def umoci(*args):
    extra = [] if ROOT or args[0] not in ("unpack",) else ["--rootless"]
    if args[0] == "repack":
        # Without it every repack diffs against the first unpack: one layer.
        extra.append("--refresh-bundle")
    r = subprocess.run([UMOCI, args[0]] + extra + list(args[1:]), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"umoci {args}: {r.stderr}"


def blob_path(layout, digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))


def manifest(layout, tag):
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    for m in idx["manifests"]:
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            with open(blob_path(layout, m["digest"])) as f:
                return m["digest"], json.load(f)
    raise KeyError(tag)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reference(layout, tag, tmp):
    """lstat walk of `umoci unpack` of the image: {path: record}."""
    bundle = os.path.join(tmp, "ref-" + tag)
    umoci("unpack", "--image", f"{layout}:{tag}", bundle)
    root = os.path.join(bundle, "rootfs")
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rec = {"type": TYPES[stat.S_IFMT(st.st_mode)], "mode": stat.S_IMODE(st.st_mode),
                   "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns // 10**9,
                   "nsec": st.st_mtime_ns % 10**9, "nlink": st.st_nlink, "ino": st.st_ino,
                   "xattrs": {x: os.getxattr(p, x, follow_symlinks=False).hex()
                              for x in os.listxattr(p, follow_symlinks=False)}}
            if rec["type"] == "f":
                rec["size"] = st.st_size
                rec["sha256"] = sha256_file(p)
            if rec["type"] == "l":
                rec["link"] = os.readlink(p)
            if rec["type"] in "cb":
                rec["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            out[os.path.relpath(p, root)] = rec
    return out


def dump(layout, tag, tmp, span=262144):
    """rootfs-dump of the image's layers (indexes saved and loaded back)."""
    _, m = manifest(layout, tag)
    blobs = [blob_path(layout, l["digest"]) for l in m["layers"]]
    os.makedirs(tmp, exist_ok=True)
    r = subprocess.run([DUMP, "-c", "64", "-i", os.path.join(tmp, "index"), "-s", str(span)] + blobs,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        j = json.loads(line)
        path = bytes.fromhex(j.pop("path")).decode("utf-8", "surrogateescape")
        if "link" in j:
            j["link"] = bytes.fromhex(j["link"]).decode("utf-8", "surrogateescape")
        out[path] = j
    return out, r.stderr


def groups(tree, key):
    g = {}
    for p, r in tree.items():
        if r["type"] != "d" and r["nlink"] > 1:
            g.setdefault(r[key], set()).add(p)
    return sorted(sorted(s) for s in g.values())


def compare(ref, got, made_parents=()):
    """made_parents: directories no layer has an entry for; umoci gives them
    the time of the unpack, so their mtime is not compared."""
    diffs = []
    got = {p: r for p, r in got.items() if p != ""}
    for p in sorted(set(ref) | set(got)):
        a, b = ref.get(p), got.get(p)
        if a is None or b is None:
            diffs.append(f"{p}: only in {'rootfs-dump' if a is None else 'umoci'}")
            continue
        for k in ("type", "mode", "uid", "gid", "mtime", "nsec", "nlink", "size", "link",
                  "rdev", "xattrs", "sha256"):
            if k == "rdev" and a["type"] not in "cb":
                continue
            if k in ("mtime", "nsec") and p in made_parents:
                continue
            if k in a and a[k] != b.get(k):
                diffs.append(f"{p}: {k} umoci={a[k]!r} dump={b.get(k)!r}")
    if groups(ref, "ino") != groups(got, "group"):
        diffs.append(f"hardlink groups: umoci={groups(ref, 'ino')} dump={groups(got, 'group')}")
    return diffs


def copy_usr(rootfs):
    """A few hundred real files, binaries and links from this machine."""
    for src in ["/usr/share/zoneinfo/Europe", "/usr/share/zoneinfo/America",
                "/usr/share/doc/bash", "/usr/bin/bash", "/usr/bin/ls", "/usr/bin/gzip",
                "/usr/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
                "/usr/lib/x86_64-linux-gnu/libc.so.6"]:
        if os.path.lexists(src):
            dest = rootfs + os.path.dirname(src)
            os.makedirs(dest, exist_ok=True)
            subprocess.run(["cp", "-a", src, dest + "/"], check=True)


def specials(r):
    """setuid/setgid/sticky, ids, links, fifo, device, xattrs, ns mtimes."""
    os.makedirs(f"{r}/srv/shared", exist_ok=True)
    os.chmod(f"{r}/srv/shared", 0o2775)
    os.makedirs(f"{r}/srv/tmp", exist_ok=True)
    os.chmod(f"{r}/srv/tmp", 0o1777)
    shutil.copy(f"{r}/usr/bin/ls", f"{r}/srv/su-like")
    os.chmod(f"{r}/srv/su-like", 0o4755)
    with open(f"{r}/srv/owned", "w") as f:
        f.write("owned\n")
    os.link(f"{r}/srv/owned", f"{r}/srv/owned-link")
    os.link(f"{r}/srv/owned", f"{r}/srv/tmp/owned-link2")
    os.symlink("../usr/bin/bash", f"{r}/srv/sh")
    os.symlink("/nowhere/at/all", f"{r}/srv/dangling")
    os.mkfifo(f"{r}/srv/fifo")
    if ROOT:
        os.lchown(f"{r}/srv/owned", 1234, 5678)
        os.lchown(f"{r}/srv/sh", 42, 43)
        os.mknod(f"{r}/srv/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.setxattr(f"{r}/srv/su-like", "security.capability", CAP)
        shutil.copy(f"{r}/usr/bin/gzip", f"{r}/srv/ping-like")
        os.setxattr(f"{r}/srv/ping-like", "security.capability", CAP)
    os.setxattr(f"{r}/srv/owned", "user.note", b"hello\x00world")
    os.utime(f"{r}/srv/owned", ns=(1700000000123456789, 1700000000123456789))
    os.utime(f"{r}/srv/sh", ns=(1600000000000000001, 1600000000000000001),
             follow_symlinks=False)


@pytest.fixture(scope="module")
def umoci_image(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("umoci"))
    layout, bundle = f"{tmp}/layout", f"{tmp}/bundle"
    umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:v1")
    umoci("unpack", "--image", f"{layout}:v1", bundle)
    r = f"{bundle}/rootfs"
    copy_usr(r)
    specials(r)
    umoci("repack", "--image", f"{layout}:v1", bundle)
    # Layer 2: deletions, a directory deleted and recreated, a hardlink to a
    # file of layer 1, a changed file and mode.
    for name in sorted(os.listdir(f"{r}/usr/share/zoneinfo/Europe"))[::3]:
        p = f"{r}/usr/share/zoneinfo/Europe/{name}"
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    shutil.rmtree(f"{r}/usr/share/zoneinfo/America/Argentina")
    os.makedirs(f"{r}/usr/share/zoneinfo/America/Argentina")
    with open(f"{r}/usr/share/zoneinfo/America/Argentina/new", "w") as f:
        f.write("recreated\n")
    os.link(f"{r}/usr/bin/gzip", f"{r}/usr/bin/gzip-link")
    with open(f"{r}/srv/owned", "a") as f:
        f.write("more\n")
    os.chmod(f"{r}/usr/bin/ls", 0o700)
    umoci("repack", "--image", f"{layout}:v1", bundle)
    # Layer 3: the setuid file goes, a directory becomes a file and back.
    os.unlink(f"{r}/srv/su-like")
    shutil.rmtree(f"{r}/usr/share/doc/bash")
    with open(f"{r}/usr/share/doc/bash", "w") as f:
        f.write("now a file\n")
    os.unlink(f"{r}/srv/sh")
    os.makedirs(f"{r}/srv/sh/inside")
    umoci("repack", "--image", f"{layout}:v1", bundle)
    return layout


def tar_layer(entries, fmt, pax_headers=None):
    """entries: (TarInfo kwargs, data or None) in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_headers or {}) as t:
        for kw, data in entries:
            ti = tarfile.TarInfo(kw.pop("name"))
            ti.mtime = 1700000000
            for k, v in kw.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def D(name, mode=0o755, **kw):
    return (dict(name=name, type=tarfile.DIRTYPE, mode=mode, **kw), None)


def F(name, data, mode=0o644, **kw):
    return (dict(name=name, type=tarfile.REGTYPE, mode=mode, **kw), data)


def L(name, target, kind=tarfile.SYMTYPE, **kw):
    return (dict(name=name, type=kind, linkname=target, mode=0o777, **kw), None)


def add_image(layout, tag, layers):
    """An image of raw layers [(tar bytes, "gzip" | "gzip2" | "tar")]."""
    descs, diff_ids = [], []
    for data, comp in layers:
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        mt = "application/vnd.oci.image.layer.v1.tar"
        if comp.startswith("gzip"):
            mt += "+gzip"
            if comp == "gzip2":  # two members, cut at an odd offset
                cut = len(data) // 3 + 7
                data = gzip.compress(data[:cut], mtime=0) + gzip.compress(data[cut:], mtime=0)
            else:
                data = gzip.compress(data, mtime=0)
        elif comp == "zstd":
            mt += "+zstd"
            data = subprocess.run(["zstd", "-q", "-c", "-19"], input=data, check=True,
                                  capture_output=True).stdout
        descs.append({"mediaType": mt, "digest": write_blob(layout, data), "size": len(data)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": write_blob(layout, config), "size": len(config)},
                    "layers": descs}).encode()
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    idx["manifests"] = idx.get("manifests") or []
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": write_blob(layout, m), "size": len(m),
                             "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f)


def write_blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d


@pytest.fixture(scope="module")
def tarfile_image(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("tarfile"))
    layout = f"{tmp}/layout"
    umoci("init", "--layout", layout)
    long_dir = "long/" + "d" * 120
    long_name = long_dir + "/" + "n" * 130
    base = tar_layer([
        D("./"), D("etc"), F("etc/conf", b"conf\n"), L("etc/conf-link", "etc/conf", tarfile.LNKTYPE),
        D("opq"), F("opq/a", b"a"), D("opq/sub"), F("opq/sub/b", b"b"),
        D("gone"), F("gone/x", b"x"), D("long"), D(long_dir), F(long_name, b"gnu long name"),
        L("etc/longlink", "/" + "t" * 150),
        D("dev"), D("run"),
        (dict(name="run/fifo", type=tarfile.FIFOTYPE, mode=0o600), None),
        (dict(name="dev/null2", type=tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3), None),
        (dict(name="dev/blk", type=tarfile.BLKTYPE, mode=0o660, devmajor=8, devminor=1), None),
        F("etc/ids", b"ids", uid=1000, gid=1001, uname="someone", gname="group"),
        F("etc/big-uid", b"b256", uid=3000000, gid=4000000),
        D("usr"), D("usr/lib"), L("lib", "usr/lib"), L("abslib", "/usr/lib"),
    ], tarfile.GNU_FORMAT)
    pax_path = "pax/" + "p" * 200 + "/" + "q" * 60
    middle = tar_layer([
        D("opq"), F("opq/.wh..wh..opq", b""), F("opq/new", b"new"),
        F("etc/.wh.conf", b""), F(".wh.gone", b""), D("gone"), F("gone/y", b"y"),
        D("pax"), D("pax/" + "p" * 200), F(pax_path, b"pax long name"),
        L("lowerlink", "/etc/conf-link", tarfile.LNKTYPE),
        (dict(name="etc/xattr", type=tarfile.REGTYPE, mode=0o644,
              pax_headers={"SCHILY.xattr.user.pax": "v1",
                           "SCHILY.xattr.trusted.overlay.opaque": "y"}), b"x"),
        (dict(name="etc/frac", type=tarfile.REGTYPE, mode=0o644, mtime=1700000000.25), b"f"),
    ], tarfile.PAX_FORMAT)  # no global header: umoci 0.4.7 fails on typeflag g
    top = tar_layer([
        D("modes"), F("modes/setuid", b"s", mode=0o4755), F("modes/setgid", b"g", mode=0o2711),
        D("modes/sticky", mode=0o1777), F("dup", b"first"), F("dup", b"second", mode=0o600),
        F("etc/.wh.ids", b""), L("rel", "../etc/xattr"),
        F("data/big", bytes(range(256)) * 8000),
        F("lib/via-link", b"v"), F("abslib/via-abs", b"w"),  # parents through symlinks
    ], tarfile.GNU_FORMAT)
    add_image(layout, "py", [(base, "gzip"), (middle, "tar"), (top, "gzip2")])
    if shutil.which("zstd"):
        add_image(layout, "py-zstd", [(base, "zstd"), (middle, "zstd"), (top, "zstd")])
    return layout


def check_image(layout, tag, tmp, made_parents=()):
    ref = reference(layout, tag, tmp)
    got, log = dump(layout, tag, tmp)
    diffs = compare(ref, got, made_parents)
    assert not diffs, "\n".join(diffs[:40]) + f"\n({len(diffs)} differences)\n" + log[-2000:]
    return ref, got, log


def test_umoci_image(umoci_image, tmp_path):
    ref, got, _ = check_image(umoci_image, "v1", str(tmp_path))
    assert len(ref) > 200
    # The walk compared what it should: ids, xattrs, links, devices.
    assert ref["srv/owned"]["xattrs"] == {"user.note": b"hello\x00world".hex()}
    assert len(groups(ref, "ino")) >= 2
    if ROOT:
        assert ref["srv/owned"]["uid"] == 1234 and ref["srv/null"]["rdev"] == [1, 3]
        assert ref["srv/ping-like"]["xattrs"] == {"security.capability": CAP.hex()}
    assert "usr/share/zoneinfo/America/Argentina/new" in got
    assert got["srv/sh"]["type"] == "d"
    assert got["srv/owned"]["nlink"] == 3 or got["srv/owned"]["nlink"] == ref["srv/owned"]["nlink"]


def test_tarfile_image(tarfile_image, tmp_path):
    ref, got, log = check_image(tarfile_image, "py", str(tmp_path), made_parents={"data"})
    assert sorted(p for p in got if p.startswith("opq/")) == ["opq/new"]
    assert sorted(p for p in got if p.startswith("gone/")) == ["gone/y"]
    assert not any(os.path.basename(p).startswith(".wh.") for p in got)
    assert got["lowerlink"]["nlink"] == 2 and "etc/conf" not in got
    assert got["etc/xattr"]["xattrs"] == {"user.pax": b"v1".hex()}
    assert got["etc/frac"]["nsec"] == 250000000
    assert got["dup"]["sha256"] == hashlib.sha256(b"second").hexdigest()
    assert [got[p]["layer"] for p in ("etc/conf-link", "opq/new", "data/big")] == [0, 1, 2]
    assert "usr/lib/via-link" in got and "usr/lib/via-abs" in got


def test_layer_view(tarfile_image, tmp_path):
    """TAG@layers/1: whiteout markers are shown as stored."""
    _, m = manifest(tarfile_image, "py")
    r = subprocess.run([DUMP, "-l", "1"] + [blob_path(tarfile_image, l["digest"])
                                           for l in m["layers"]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    paths = {bytes.fromhex(json.loads(l)["path"]).decode() for l in r.stdout.splitlines()}
    assert {"opq/.wh..wh..opq", "etc/.wh.conf", ".wh.gone", "gone/y"} <= paths
    assert "lowerlink" not in paths  # its target is in layer 0


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd not installed")
def test_zstd_layers(tarfile_image, tmp_path):
    """umoci 0.4.7 cannot unpack zstd layers: the same layers as zstd must
    give exactly what their gzip/tar forms give (checked against umoci above)."""
    want, _ = dump(tarfile_image, "py", str(tmp_path / "a"))
    got, _ = dump(tarfile_image, "py-zstd", str(tmp_path / "b"))
    assert groups(want, "group") == groups(got, "group")
    strip = lambda t: {p: {k: v for k, v in r.items() if k != "group"} for p, r in t.items()}
    assert strip(want) == strip(got)
