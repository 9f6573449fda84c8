"""A blob larger than a test wants to upload (> 4 GiB) stored sparse: the
control call sparse_blob writes the registry's data file as a hole with a
few patches and marks the blob present in a repository, so downloads
(served from that file) and PutImage see it like a pushed layer. The
caller gives the digest (the sha256 of the whole content): hashing 4 GiB
is the caller's one-off, not every run's."""
import base64
import os


def sparse_blob(app, args):
    digest, size = args["digest"], int(args["size"])
    acct = args.get("account", "111111111111")
    region = args.get("region", "us-east-1")
    repo = args["repo"]
    path = app.registry.blob_path(digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.truncate(size)
        for p in args.get("patches", []):
            f.seek(int(p["offset"]))
            f.write(base64.b64decode(p["data_b64"]))
    os.replace(path + ".tmp", path)
    # the backing registry's link of the blob into the repository, so that
    # a manifest naming it is accepted there too
    hexd = digest.split(":", 1)[1]
    link = os.path.join(app.registry.data_dir, "docker", "registry", "v2", "repositories",
                        app.registry.name(acct, region, repo), "_layers", "sha256", hexd)
    os.makedirs(link, exist_ok=True)
    with open(os.path.join(link, "link"), "w") as f:
        f.write(digest)
    with app.state.lock:
        r = app.state.repos[(acct, region, repo)]
        r.blobs[digest] = {"size": size, "mediaType": None}
        app.state.changed()
    return {"path": path}
