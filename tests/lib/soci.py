"""SOCI-like indexes written at test time: gzip layers compressed here with a
sync flush every SPAN bytes of tar (so each span starts on a byte-aligned
deflate block: checkpoint bits 0, the window is the 32 KiB of tar before
it), their zTOC written with Debian's python3-flatbuffers against the
soci-snapshotter's ztoc.fbs (file metadata from tarfile, the "zinfo" blob of
gzip checkpoints, a sha256 per span), and SOCI index manifests for the v1
(subject, referrers) and v2 (image manifest annotation) bindings."""
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import tarfile
import zlib

import flatbuffers

WIN = 32768
V1_TYPE = "application/vnd.amazon.soci.index.v1+json"
V2_TYPE = "application/vnd.amazon.soci.index.v2+json"
LAYER_ANN = "com.amazon.soci.image-layer-digest"
INDEX_ANN = "com.amazon.soci.index-digest"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
EMPTY = b"{}"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gzip_spans(tar, span):
    """(gzip bytes, [(in, out, bits, window)]): one checkpoint after the
    header, then one per span of tar, each after a sync flush."""
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    body, ck = [], [(len(head), 0, 0, bytes(WIN))]
    n = len(head)
    for off in range(0, len(tar), span):
        if off:
            win = tar[max(0, off - WIN):off]
            ck.append((n, off, 0, bytes(WIN - len(win)) + win))
        chunk = co.compress(tar[off:off + span]) + co.flush(zlib.Z_SYNC_FLUSH)
        body.append(chunk)
        n += len(chunk)
    body.append(co.flush(zlib.Z_FINISH))
    gz = head + b"".join(body) + struct.pack("<II", zlib.crc32(tar), len(tar) & 0xffffffff)
    assert gzip.decompress(gz) == tar
    return gz, ck


def zinfo_blob(ck, span):
    out = [struct.pack("<Iq", len(ck), span)]
    for cin, cout, bits, win in ck:
        out.append(struct.pack("<qqB", cin, cout, bits) + win)
    return b"".join(out)


def span_digests(gz, ck):
    ds = []
    for i, (cin, _, bits, _) in enumerate(ck):
        start = cin - (1 if bits else 0)
        end = ck[i + 1][0] if i + 1 < len(ck) else len(gz)
        ds.append(digest(gz[start:end]))
    return ds


TYPES = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir",
         tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
         tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def rfc3339(ti):
    """Go's time.MarshalText of the entry's mtime (UTC, nanoseconds when any)."""
    m = ti.pax_headers.get("mtime")
    sec, frac = (m.split(".") + [""])[:2] if m else (str(int(ti.mtime)), "")
    t = datetime.datetime.fromtimestamp(int(sec), datetime.timezone.utc)
    frac = frac[:9].rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if frac else "") + "Z"


def toc(tar):
    """File metadata per tar member, as the SOCI builder records it."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        for ti in tf:
            out.append(dict(name=ti.name, type=TYPES[ti.type], off=ti.offset_data, size=ti.size,
                            link=ti.linkname, mode=ti.mode, uid=ti.uid, gid=ti.gid,
                            uname=ti.uname, gname=ti.gname, mtime=rfc3339(ti),
                            major=ti.devmajor, minor=ti.devminor,
                            xattrs=sorted(ti.pax_headers.items())))
    return out


def _strings(b, items):
    return [b.CreateString(s) for s in items]


def _vector(b, offs):
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _metadata(b, e):
    name, typ, link, uname, gname, mtime = _strings(
        b, [e["name"], e["type"], e["link"], e["uname"], e["gname"], e["mtime"]])
    xs = []
    for k, v in e["xattrs"]:
        ko, vo = b.CreateString(k), b.CreateString(v)
        b.StartObject(2)
        b.PrependUOffsetTRelativeSlot(0, ko, 0)
        b.PrependUOffsetTRelativeSlot(1, vo, 0)
        xs.append(b.EndObject())
    xv = _vector(b, xs)
    b.StartObject(14)
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUOffsetTRelativeSlot(1, typ, 0)
    b.PrependInt64Slot(2, e["off"], 0)
    b.PrependInt64Slot(3, e["size"], 0)
    b.PrependUOffsetTRelativeSlot(4, link, 0)
    b.PrependInt64Slot(5, e["mode"], 0)
    b.PrependUint32Slot(6, e["uid"], 0)
    b.PrependUint32Slot(7, e["gid"], 0)
    b.PrependUOffsetTRelativeSlot(8, uname, 0)
    b.PrependUOffsetTRelativeSlot(9, gname, 0)
    b.PrependUOffsetTRelativeSlot(10, mtime, 0)
    b.PrependInt64Slot(11, e["major"], 0)
    b.PrependInt64Slot(12, e["minor"], 0)
    b.PrependUOffsetTRelativeSlot(13, xv, 0)
    return b.EndObject()


def ztoc(tar, gz, ck, span, digests=None):
    """The zTOC flatbuffer of layer gz (whose tar is tar)."""
    b = flatbuffers.Builder(1 << 16)
    entries = [_metadata(b, e) for e in toc(tar)]
    ev = _vector(b, entries)
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, ev, 0)
    toc_off = b.EndObject()
    dv = _vector(b, _strings(b, digests if digests is not None else span_digests(gz, ck)))
    cv = b.CreateByteVector(zinfo_blob(ck, span))
    b.StartObject(4)
    b.PrependInt8Slot(0, 1, 1)
    b.PrependInt32Slot(1, len(ck) - 1, 0)
    b.PrependUOffsetTRelativeSlot(2, dv, 0)
    b.PrependUOffsetTRelativeSlot(3, cv, 0)
    ci = b.EndObject()
    ver, tool = b.CreateString("0.9"), b.CreateString("ecrfs tests")
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(0, ver, 0)
    b.PrependUOffsetTRelativeSlot(1, tool, 0)
    b.PrependInt64Slot(2, len(gz), 0)
    b.PrependInt64Slot(3, len(tar), 0)
    b.PrependUOffsetTRelativeSlot(4, toc_off, 0)
    b.PrependUOffsetTRelativeSlot(5, ci, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def index_manifest(ztocs, version, subject=None):
    """A SOCI index manifest over [(ztoc bytes, layer digest)]."""
    t = V1_TYPE if version == 1 else V2_TYPE
    m = {"schemaVersion": 2, "mediaType": MANIFEST_MT, "artifactType": t,
         "config": {"mediaType": t, "digest": digest(EMPTY), "size": len(EMPTY)},
         "layers": [{"mediaType": "application/octet-stream", "digest": digest(z), "size": len(z),
                     "annotations": {LAYER_ANN: ld,
                                     "com.amazon.soci.image-layer-mediaType":
                                         "application/vnd.oci.image.layer.v1.tar+gzip"}}
                    for z, ld in ztocs]}
    if subject:
        m["subject"] = subject
    return json.dumps(m).encode()


SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "ztoc.fbs")
FLATC = shutil.which("flatc")


def ztoc_json(tar, gz, ck, span, digests=None):
    """The zTOC as the JSON flatc reads with the schema."""
    return {"version": "0.9", "build_tool_identifier": "ecrfs tests (flatc)",
            "compressed_archive_size": len(gz), "uncompressed_archive_size": len(tar),
            "toc": {"metadata": [
                {"name": e["name"], "type": e["type"], "uncompressed_offset": e["off"],
                 "uncompressed_size": e["size"], "linkname": e["link"], "mode": e["mode"],
                 "uid": e["uid"], "gid": e["gid"], "uname": e["uname"], "gname": e["gname"],
                 "mod_time": e["mtime"], "devmajor": e["major"], "devminor": e["minor"],
                 "xattrs": [{"key": k, "value": v} for k, v in e["xattrs"]]}
                for e in toc(tar)]},
            "compression_info": {"compression_algorithm": "Gzip", "max_span_id": len(ck) - 1,
                                 "span_digests": digests if digests is not None
                                 else span_digests(gz, ck),
                                 "checkpoints": list(zinfo_blob(ck, span))}}


def flatc(args, files):
    """Runs flatc in a temporary directory holding files {name: bytes};
    returns that directory's files afterwards."""
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        subprocess.run([FLATC] + args, cwd=d, check=True, capture_output=True, timeout=300)
        return {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}


def ztoc_by_flatc(tar, gz, ck, span):
    """The same zTOC, serialised by flatc from JSON against the schema (a
    second writer, with its own layout: shared vtables, other order)."""
    schema = open(SCHEMA, "rb").read()
    j = json.dumps(ztoc_json(tar, gz, ck, span)).encode()
    return flatc(["-b", "ztoc.fbs", "z.json"], {"ztoc.fbs": schema, "z.json": j})["z.bin"]


def decode_by_flatc(ztoc_bytes):
    """A zTOC decoded by flatc with the schema, as JSON."""
    schema = open(SCHEMA, "rb").read()
    out = flatc(["--json", "--strict-json", "--raw-binary", "ztoc.fbs", "--", "z.bin"],
                {"ztoc.fbs": schema, "z.bin": ztoc_bytes})
    return json.loads(out["z.json"])
