"""Layers that carry their own table of contents, written the way their
formats' reference writers do, for tests and for the fuzz seeds:

- eStargz (github.com/containerd/stargz-snapshotter estargz): one tar stream
  cut into gzip members so that every chunk of a regular file starts a
  member (its padding and the next headers follow in that member); then the
  TOC, a member holding the tar entry stargz.index.json and the end of the
  archive; then the 51-byte footer, an empty gzip member whose extra field
  is 'S' 'G' 22 "%016xSTARGZ" with the TOC's offset. The TOC digest is the
  sha256 of the JSON (layer annotation containerd.io/snapshot/stargz/toc.digest).
- zstd:chunked (github.com/containers/storage pkg/chunked): one tar stream
  cut into zstd frames so that every chunk of a file's data is its own
  frame; then skippable frames holding the zstd-compressed manifest (the
  TOC), the tar-split data, and a 64-byte footer (manifest offset, length,
  uncompressed length, type 1, tar-split offset, lengths, "GNUlInUx"); the
  annotations io.github.containers.zstd-chunked.manifest-position
  ("off:len:ulen:1") and ...manifest-checksum (sha256 of the compressed
  manifest).

Frames are made by the zstd CLI (Debian has no python3-zstandard)."""
import base64
import datetime
import gzip
import hashlib
import io
import json
import struct
import subprocess
import tarfile
import zlib

ESTARGZ_TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"
ZCHUNKED_POSITION = "io.github.containers.zstd-chunked.manifest-position"
ZCHUNKED_CHECKSUM = "io.github.containers.zstd-chunked.manifest-checksum"
TYPES = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir",
         tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
         tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def rfc3339(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def toc_entry(ti, data):
    """A TOC entry of tarfile.TarInfo ti (eStargz / zstd:chunked fields)."""
    e = {"name": ti.name, "type": TYPES[ti.type], "modtime": rfc3339(ti.mtime),
         "mode": ti.mode, "uid": ti.uid, "gid": ti.gid}
    if ti.uname:
        e["userName"] = ti.uname
    if ti.gname:
        e["groupName"] = ti.gname
    if ti.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        e["linkName"] = ti.linkname
    if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        e["devMajor"], e["devMinor"] = ti.devmajor, ti.devminor
    xa = {k[len("SCHILY.xattr."):]: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()
          for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    if xa:
        e["xattrs"] = xa
    if data:
        e["size"] = len(data)
        e["digest"] = sha(data)
    return e


def pieces(entries, fmt, chunk):
    """The tar stream of entries [(TarInfo kwargs, data or None)] as pieces:
    ("meta", bytes) for headers and padding, ("entry", b"", TOC entry) where
    an entry starts, ("chunk", bytes, entry, index, offset in file) for file
    data."""
    out = []
    for kw, data in entries:
        kw = dict(kw)
        ti = tarfile.TarInfo(kw.pop("name"))
        ti.mtime = 1700000000
        for k, v in kw.items():
            setattr(ti, k, v)
        ti.size = len(data) if data is not None else 0
        e = toc_entry(ti, data)
        out.append(("entry", b"", e))
        out.append(("meta", ti.tobuf(fmt, "utf-8", "surrogateescape")))
        for i, off in enumerate(range(0, len(data or b""), chunk)):
            out.append(("chunk", data[off:off + chunk], e, i, off))
        if ti.size % 512:
            out.append(("meta", b"\0" * (512 - ti.size % 512)))
    return out


def chunk_fields(e, toc, i, off, part, last):
    """The entry of chunk i (the file's own entry for i = 0)."""
    if i == 0:
        ce = e
    else:
        ce = {"name": e["name"], "type": "chunk", "chunkOffset": off}
        toc.append(ce)
    if not last:
        ce["chunkSize"] = len(part)
    ce["chunkDigest"] = sha(part)
    return ce


def estargz(entries, fmt=tarfile.PAX_FORMAT, chunk=65536):
    """(blob, toc digest, uncompressed tar) of an eStargz layer."""
    ps = pieces(entries, fmt, chunk)
    blob, member, tar, toc = io.BytesIO(), [], io.BytesIO(), []

    def close():
        if member:
            blob.write(gzip.compress(b"".join(member), mtime=0))
            member.clear()

    for p in ps:
        tar.write(p[1])
        if p[0] == "entry":
            toc.append(p[2])
            continue
        if p[0] == "meta":
            member.append(p[1])
            continue
        _, part, e, i, off = p
        close()
        ce = chunk_fields(e, toc, i, off, part, off + len(part) == e["size"])
        ce["offset"] = blob.tell()
        member.append(part)
    close()
    js = json.dumps({"version": 1, "entries": toc}).encode()
    toc_off = blob.tell()
    ti = tarfile.TarInfo("stargz.index.json")
    ti.size, ti.mtime = len(js), 0
    end = ti.tobuf(tarfile.USTAR_FORMAT) + js + b"\0" * (-len(js) % 512) + b"\0" * 1024
    tar.write(end)
    blob.write(gzip.compress(end, mtime=0))
    blob.write(estargz_footer(toc_off))
    return blob.getvalue(), sha(js), tar.getvalue()


def estargz_footer(toc_off):
    extra = b"SG" + struct.pack("<H", 22) + b"%016xSTARGZ" % toc_off
    head = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + struct.pack("<H", len(extra)) + extra
    f = head + b"\x01\x00\x00\xff\xff" + struct.pack("<II", zlib.crc32(b""), 0)
    assert len(f) == 51
    return f


def zstd_frame(b):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=b, check=True,
                          capture_output=True).stdout


def skippable(b):
    return b"\x50\x2a\x4d\x18" + struct.pack("<I", len(b)) + b


def zstd_chunked(entries, fmt=tarfile.PAX_FORMAT, chunk=65536, digests="chunks"):
    """(blob, annotations, uncompressed tar) of a zstd:chunked layer.
    digests="file": files of one chunk carry only the file digest."""
    ps = pieces(entries, fmt, chunk)
    blob, meta, tar, toc = io.BytesIO(), [], io.BytesIO(), []

    def close():
        if meta:
            blob.write(zstd_frame(b"".join(meta)))
            meta.clear()

    for p in ps:
        tar.write(p[1])
        if p[0] == "entry":
            toc.append(p[2])
            continue
        if p[0] == "meta":
            meta.append(p[1])
            continue
        _, part, e, i, off = p
        close()
        last = off + len(part) == e["size"]
        if i == 0 and last and digests == "file":
            ce = e
        else:
            ce = chunk_fields(e, toc, i, off, part, last)
        ce["offset"] = blob.tell()
        blob.write(zstd_frame(part))
        ce["endOffset"] = blob.tell()
    meta.append(b"\0" * 1024)
    tar.write(b"\0" * 1024)
    close()
    js = json.dumps({"version": 1, "entries": toc}).encode()
    man = zstd_frame(js)
    man_off = blob.tell() + 8
    blob.write(skippable(man))
    split = zstd_frame(b"{}\n")
    split_off = blob.tell() + 8
    blob.write(skippable(split))
    blob.write(skippable(struct.pack("<QQQQQQQ", man_off, len(man), len(js), 1, split_off,
                                     len(split), 3) + b"GNUlInUx"))
    ann = {ZCHUNKED_POSITION: f"{man_off}:{len(man)}:{len(js)}:1", ZCHUNKED_CHECKSUM: sha(man)}
    return blob.getvalue(), ann, tar.getvalue()
