"""The stress checker's mmap reader, a child process: a read through a
mapping that the filesystem fails kills the reader with SIGBUS (there is no
errno to catch), so each checker thread keeps one of these and counts its
death as the mmap form of EIO.

Protocol on stdin/stdout: one line "PATH OFFSET LENGTH DROP" in; "OK N\\n"
and N bytes out, or "ERR errno\\n" when open or mmap itself fails. DROP=1
evicts the file's pages from the page cache first, so the faults reach
the daemon."""
import mmap
import os
import sys


def serve():
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        path, off, length, drop = line.decode().rsplit(" ", 3)
        off, length = int(off), int(length)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            out.write(f"ERR {e.errno}\n".encode())
            out.flush()
            continue
        try:
            if drop == "1":
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            size = os.fstat(fd).st_size
            m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except OSError as e:
            os.close(fd)
            out.write(f"ERR {e.errno}\n".encode())
            out.flush()
            continue
        try:
            data = m[off:off + length]  # a failed page here is SIGBUS
        finally:
            m.close()
            os.close(fd)
        out.write(f"OK {len(data)}\n".encode())
        out.write(data)
        out.flush()


if __name__ == "__main__":
    serve()
