#!/usr/bin/python3
"""The steps of scripts/demo (which installs and builds first).

Starts the local ECR emulator (backed by docker-registry), seeds it with
images built by umoci, lists them with ecrfs-ctl, mounts ecrfs and shows
browse, inspect and push, each command printed before its output.

State lives in DEMO_DIR (default /tmp/ecrfs-demo): the emulator's state, the
mount point, the cache, logs, and state.json with the pids that --stop ends.
"""
import argparse
import errno
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

SRC = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SRC / "tests" / "lib"))

ACCOUNT = "111111111111"
REGION = "us-east-1"
KEY, SECRET = "AKIAEMU1AAAAAAAAAAAA", "emu-secret-111"
BOLD, DIM, RED, GREEN, OFF = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = RED = GREEN = OFF = ""


class StepFailed(Exception):
    pass


def umoci(*args):
    r = subprocess.run(["/usr/bin/umoci", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise StepFailed(f"umoci {' '.join(args)}: {r.stderr.strip()}")


def make_image(layout, tag, files, n_layers):
    """An image built with umoci unpack + repack, one repack per layer.
    (Debian's umoci 0.4.7 `insert` writes layers without the tar trailer, which
    GNU tar rejects as "Unexpected EOF"; repack writes complete archives.)"""
    layout = str(layout)
    if not os.path.exists(os.path.join(layout, "index.json")):
        umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:{tag}")
    bundle = f"{layout}.bundle-{tag}"
    rootless = ["--rootless"] if os.geteuid() != 0 else []
    umoci("unpack", *rootless, "--image", f"{layout}:{tag}", bundle)
    items = sorted(files.items())
    for i in range(n_layers):
        for path, data in items[i::n_layers]:
            p = pathlib.Path(bundle, "rootfs", path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        umoci("repack", "--refresh-bundle", "--image", f"{layout}:{tag}", bundle)
    shutil.rmtree(bundle)
    idx = json.loads(pathlib.Path(layout, "index.json").read_text())
    desc = next(m for m in idx["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    return {"manifest": desc["digest"]}


def heading(text):
    print(f"\n{BOLD}== {text}{OFF}", flush=True)


def say(text):
    print(text, flush=True)


def not_yet(what):
    say(f"{DIM}[not available yet: {what}]{OFF}")


# ---------------------------------------------------------------- processes

def alive(pid, needle):
    """pid runs and its command line contains needle (guards against pid reuse)."""
    try:
        cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return needle.encode() in cmd


def wait_gone(pid, needle, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid, needle):
            return True
        time.sleep(0.1)
    return not alive(pid, needle)


def end_process(pid, needle, group=False):
    """SIGTERM, then SIGKILL after 10 s; only if pid is still what we started."""
    if not pid or not alive(pid, needle):
        return
    try:
        os.killpg(pid, signal.SIGTERM) if group else os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_gone(pid, needle, 10):
        try:
            os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(pid, needle, 5)
    if group:
        # The emulator's docker-registry is in the same process group.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def unmount(mnt):
    if not os.path.ismount(mnt):
        return
    for cmd in (["fusermount3", "-u", mnt], ["fusermount3", "-uz", mnt], ["umount", "-l", mnt]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if not os.path.ismount(mnt):
            return


def stop(demo_dir, quiet=False):
    state_file = demo_dir / "state.json"
    if not state_file.exists():
        if not quiet:
            say(f"nothing to stop in {demo_dir}")
        return
    st = json.loads(state_file.read_text())
    if st.get("mnt"):
        unmount(st["mnt"])
    end_process(st.get("ecrfs_pid"), "ecrfs")
    end_process(st.get("emulator_pid"), "ecr_emulator.py", group=True)
    state_file.unlink()
    if not quiet:
        say(f"stopped: {st.get('mnt')} unmounted, ecrfs and the emulator ended")


def save_state(demo_dir, **kv):
    f = demo_dir / "state.json"
    st = json.loads(f.read_text()) if f.exists() else {}
    st.update(kv)
    f.write_text(json.dumps(st, indent=1))


# ---------------------------------------------------------------- the demo

class Demo:
    def __init__(self, args):
        self.build = pathlib.Path(args.build).resolve()
        self.dir = pathlib.Path(args.dir).resolve()
        self.run_through = args.run_through
        self.mnt = self.dir / "mnt"
        self.endpoint = None
        self.registry = None
        self.env = dict(os.environ)
        self.mounted = False

    # A command is shown as typed, then its output. Variables M, T, ENDPOINT
    # are set in its environment so the shown line can be pasted.
    def sh(self, cmd, check=True, show=True, timeout=300):
        if show:
            say(f"{GREEN}$ {cmd}{OFF}")
        r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=self.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        out = r.stdout.rstrip("\n")
        if show and out:
            say(out)
        if check and r.returncode != 0:
            raise StepFailed(f"`{cmd}` exited with {r.returncode}")
        return out

    def set_var(self, var, expr, comment="", literal=False):
        """Shows `VAR=$(expr)` (or `VAR=expr`), keeps the value for the
        following commands."""
        say(f"{GREEN}$ {var}={expr if literal else '$(' + expr + ')'}{comment}{OFF}")
        val = self.sh(f"echo {expr}" if literal else expr, show=False).strip()
        self.env[var] = val
        say(f"{DIM}{var}={val}{OFF}")
        return val

    def start_emulator(self):
        heading("Starting the local ECR emulator (tests/emulator/ecr_emulator.py + docker-registry)")
        emu = SRC / "tests" / "emulator" / "ecr_emulator.py"
        if not emu.exists():
            raise StepFailed("tests/emulator/ecr_emulator.py is not in this tree yet")
        (self.dir / "emu").mkdir(parents=True, exist_ok=True)
        out = open(self.dir / "emulator.out", "w")
        p = subprocess.Popen(["/usr/bin/python3", str(emu), "--state-dir", str(self.dir / "emu"),
                              "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        save_state(self.dir, emulator_pid=p.pid)
        line = None
        end = time.monotonic() + 120
        while time.monotonic() < end and p.poll() is None:
            for l in (self.dir / "emulator.out").read_text().splitlines():
                if l.startswith("READY "):
                    line = l
            if line:
                break
            time.sleep(0.1)
        if not line:
            raise StepFailed("the emulator did not start; see " + str(self.dir / "emulator.out"))
        kv = dict(f.split("=", 1) for f in line.split()[1:])
        self.endpoint, self.registry = kv["endpoint"], kv["registry"]
        save_state(self.dir, endpoint=self.endpoint, registry=self.registry)
        for f in ("aws-config", "aws-credentials"):
            (self.dir / f).write_text("")
        self.env.update({
            "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_ECR": self.endpoint, "AWS_ENDPOINT_URL_STS": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": str(self.dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.dir / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
            "ENDPOINT": self.endpoint, "M": f"{self.mnt}/{ACCOUNT}/{REGION}",
        })
        # For the explorer: `source DEMO_DIR/env.sh` gives the same variables.
        exports = [f"export {k}={shlex.quote(self.env[k])}" for k in sorted(self.env)
                   if k.startswith("AWS_") or k in ("ENDPOINT", "M")]
        (self.dir / "env.sh").write_text("\n".join(exports) + "\n")
        say(f"ECR API endpoint: {self.endpoint}   (account {ACCOUNT}, region {REGION})")
        say(f"backing registry: {self.registry}   (docker-registry, checked with skopeo)")
        say(f"credentials: access key {KEY} of the emulator's account {ACCOUNT} (in {self.dir}/env.sh)")

    def emu_handle(self):
        """What tests/lib/ecrclient.py needs: the running emulator, attached."""
        import emu as emumod
        attach = getattr(emumod.Emulator, "attach", None)
        if attach:
            return attach(self.endpoint, self.registry, self.dir / "emu")
        e = emumod.Emulator.__new__(emumod.Emulator)
        e.endpoint, e.registry, e.state_dir = self.endpoint, self.registry, self.dir / "emu"
        return e

    def seed(self):
        heading("Seeding it with real images built by umoci")
        try:
            import layouts
            import ecrclient
        except ImportError as e:
            raise StepFailed(f"tests/lib is not complete yet: {e}")
        emu = self.emu_handle()
        work = self.dir / "layouts"
        work.mkdir(exist_ok=True)
        plan = [
            ("team/app", "v1.0", {"app/version": b"1.0\n", "etc/motd": b"Hello from team/app 1.0\n"}, 2),
            ("team/app", "v1.1", {"app/version": b"1.1\n", "etc/motd": b"Hello from team/app 1.1\n",
                                  "usr/share/doc/app/README": b"team/app, the demo image\n"}, 3),
            ("team/app/ci", "build-41", {"ci/build": b"41\n"}, 1),
            ("team/app/ci", "build-42", {"ci/build": b"42\n"}, 1),
            ("tools/base", "2024.1", {"etc/os-release": b"ID=demo\nVERSION_ID=2024.1\n"}, 1),
        ]
        for repo, tag, files, layers in plan:
            d = work / f"{repo.replace('/', '_')}-{tag}"
            make_image(d, tag, files, layers)
            ecrclient.create_repository(emu, repo, account=ACCOUNT, region=REGION)
            ecrclient.push_layout(emu, str(d), repo, tag, account=ACCOUNT, region=REGION)
            say(f"pushed {repo}:{tag} ({layers} layer{'s' if layers > 1 else ''})")
        # The same image under a second tag: du shows it is stored once.
        ecrclient.push_layout(emu, str(work / "team_app-v1.1"), "team/app", "latest",
                              account=ACCOUNT, region=REGION, ref="v1.1")
        say("pushed team/app:latest (the same image as v1.1)")
        d = work / "team_web-1.0"
        layouts.make_multiarch_index(str(d), "1.0", ["linux/amd64", "linux/arm64"])
        ecrclient.create_repository(emu, "team/web", account=ACCOUNT, region=REGION)
        ecrclient.push_layout(emu, str(d), "team/web", "1.0", account=ACCOUNT, region=REGION)
        say("pushed team/web:1.0 (a multi-arch image index: linux/amd64 + linux/arm64)")

    def ctl_listing(self):
        heading("The ECR API directly, with the maintainer CLI ecrfs-ctl (no mount involved)")
        ctl = self.build / "net" / "ecrfs-ctl"
        if not ctl.exists():
            not_yet("ecrfs-ctl is not built in this tree yet (net/ecrfs_ctl.c)")
            return
        self.env["CTL"] = str(ctl)
        say(f"{DIM}(CTL={ctl}){OFF}")
        self.sh(f"$CTL ls {ACCOUNT}/{REGION}")
        self.sh(f"$CTL ls {ACCOUNT}/{REGION}/team/app")

    def mount(self):
        heading("Mounting ECR with ecrfs")
        ecrfs = self.build / "fs" / "ecrfs"
        if not ecrfs.exists():
            not_yet("the mount (fs/ecrfs is not built in this tree yet)")
            return False
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.env["ECRFS"] = str(ecrfs)
        opts = f"cache_dir={self.dir}/cache,regions={REGION}"
        cmd = [str(ecrfs), "-f", str(self.mnt), "-o", opts]
        say(f"{GREEN}$ ecrfs -f {self.mnt} -o {opts} &{OFF}")
        say(f"{DIM}  (credentials and the endpoint come from the AWS_* variables in {self.dir}/env.sh;"
            f" on EC2 nothing is needed: the instance role and IMDS region are used){OFF}")
        log = open(self.dir / "ecrfs.log", "a")
        p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        save_state(self.dir, ecrfs_pid=p.pid, mnt=str(self.mnt))
        end = time.monotonic() + 60
        while time.monotonic() < end and p.poll() is None and not os.path.ismount(self.mnt):
            time.sleep(0.1)
        if not os.path.ismount(self.mnt):
            tail = (self.dir / "ecrfs.log").read_text()[-2000:]
            raise StepFailed(f"ecrfs did not mount (exit {p.poll()}); its log:\n{tail}")
        self.mounted = True
        say(f"mounted on {self.mnt}; M={self.mnt}/{ACCOUNT}/{REGION}")
        return True

    def browse(self):
        heading("Browse: registry, region, repositories, tags")
        self.sh(f"ls -a {self.mnt}")
        self.sh(f"cat {self.mnt}/.ecrfs/identity")
        self.sh(f"ls {self.mnt}/{ACCOUNT}")
        self.sh("ls $M")
        self.sh("ls $M/team")
        self.sh("ls -l $M/team/app          # tags; ci/ is the nested repository team/app/ci")
        self.sh("ls $M/team/app/ci")
        self.sh("find $M/team/app/v1.1 | sed \"s|$M/||\"")

        heading("Inspect an image without pulling it")
        self.set_var("T", "$M/team/app/v1.1", literal=True)
        self.sh("jq . $T/index.json")
        self.sh("getfattr --absolute-names -d $T")
        self.set_var("MF", "jq -r '.manifests[0].digest' $T/index.json | cut -d: -f2",
                     "      # the manifest")
        self.sh("jq . $T/blobs/sha256/$MF")
        self.set_var("CFG", "jq -r .config.digest $T/blobs/sha256/$MF | cut -d: -f2",
                     "  # the config")
        self.sh("jq -c '.architecture, .os, .rootfs' $T/blobs/sha256/$CFG")
        self.sh("for L in $(jq -r '.layers[].digest' $T/blobs/sha256/$MF | cut -d: -f2); do "
                "echo \"layer $L\"; tar -tvzf $T/blobs/sha256/$L; done")
        member = None
        for d in self.sh("jq -r '.layers[].digest' $T/blobs/sha256/$MF | cut -d: -f2",
                         show=False).split():
            names = self.sh(f"tar -tzf $T/blobs/sha256/{d} 2>/dev/null", show=False).split("\n")
            member = next((n for n in names if n.lstrip("/") == "etc/motd"), None)
            if member:
                self.env["L"] = d
                break
        if not member:
            raise StepFailed("no layer of team/app:v1.1 holds etc/motd")
        say(f"{DIM}L={self.env['L']}   (the layer that holds etc/motd){OFF}")
        self.sh(f"tar -xzOf $T/blobs/sha256/$L {member}     # one file of one layer")
        self.sh("skopeo inspect oci:$T:v1.1 | jq '{Digest, Architecture, Os, Layers}'")
        self.sh("du -sh $M/team/app                 # what the repository stores")
        self.sh("du -sh $M/team/app/v1.1 $M/team/app/latest   # same image: latest's blobs were counted under v1.1")
        self.sh("jq . $M/team/web/1.0/index.json    # a multi-arch tag: the image index")
        self.sh("ls $M/team/web/1.0/blobs/sha256 | wc -l   # the index, 2 manifests, 2 configs, their layers")

    def push(self):
        heading("Push: cp -rT of an OCI layout into a new tag path")
        src = self.dir / "layouts" / "new-api"
        info = make_image(src, "v2", {"app/version": b"2.0\n", "etc/motd": b"Pushed with cp\n"}, 2)
        self.env["SRC"] = str(src)
        say(f"{DIM}(SRC={src}: an OCI image layout built by umoci, tag v2){OFF}")
        self.sh("ls $SRC $SRC/blobs/sha256")
        say(f"{GREEN}$ mkdir -p $M/team/api               # a new repository: created when cp writes the layout{OFF}")
        try:
            os.makedirs(f"{self.mnt}/{ACCOUNT}/{REGION}/team/api", exist_ok=True)
        except OSError as e:
            if e.errno == errno.EROFS:
                not_yet("push (this build of ecrfs answers EROFS to mkdir: fs/fuse/write_files.c not in it)")
                return
            raise StepFailed(f"mkdir: {e}")
        self.sh("cp -rT $SRC $M/team/api/v2")
        self.sh("sync $M/team/api/v2 && echo committed   # returns the push's result")
        self.sh("ls -l $M/team/api")
        out = self.sh("/usr/bin/aws ecr describe-images --endpoint-url $ENDPOINT "
                      "--repository-name team/api --query 'imageDetails[].[imageTags[0],imageDigest]' "
                      "--output text")
        want = info.get("manifest") if isinstance(info, dict) else None
        if want and want not in out:
            raise StepFailed(f"ECR lists {out!r}, expected the layout's manifest {want}")
        if want:
            say(f"the digest ECR reports is the layout's manifest digest: {want}")
        self.sh(f"skopeo inspect --tls-verify=false docker://{self.registry}/{ACCOUNT}/{REGION}/team/api:v2"
                " | jq -r .Digest        # the backing registry, an independent client")

    def explain(self):
        heading("Explore it yourself")
        say(f"""The mount stays up. In another shell:

    source {self.dir}/env.sh            # M, ENDPOINT and the emulator's AWS credentials
    ls $M; ls -l $M/team/app
    cat {self.mnt}/.ecrfs/stats | jq .
    /usr/bin/aws ecr describe-repositories --endpoint-url $ENDPOINT

ecrfs log: {self.dir}/ecrfs.log    emulator log: {self.dir}/emulator.out
Stop everything:   scripts/demo --stop
  (or by hand: fusermount3 -u {self.mnt}; kill the pids in {self.dir}/state.json)""")

    def run(self):
        stop(self.dir, quiet=True)  # a previous interactive demo in the same directory
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in ("emu", "cache", "layouts", "mnt"):  # start from an empty registry
            p = self.dir / old
            if p.exists() and not os.path.ismount(p):
                shutil.rmtree(p)
        (self.dir / "ecrfs.log").unlink(missing_ok=True)
        ok = False
        try:
            self.start_emulator()
            self.seed()
            self.ctl_listing()
            if self.mount():
                self.browse()
                self.push()
            ok = True
        except StepFailed as e:
            say(f"\n{RED}demo step failed: {e}{OFF}")
        except subprocess.TimeoutExpired as e:
            say(f"\n{RED}demo step timed out: {e.cmd}{OFF}")
        finally:
            if self.run_through or not ok or not self.mounted:
                stop(self.dir, quiet=True)
                heading("Cleaned up" if ok else "Cleaned up after the failure")
        if ok and not self.run_through and self.mounted:
            self.explain()
        if ok:
            say(f"\n{BOLD}demo finished{OFF}")
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(SRC / "build-demo"))
    ap.add_argument("--dir", default=os.environ.get("ECRFS_DEMO_DIR", "/tmp/ecrfs-demo"))
    ap.add_argument("--run-through", action="store_true")
    ap.add_argument("--stop", action="store_true")
    args = ap.parse_args()
    if args.stop:
        stop(pathlib.Path(args.dir))
        return 0
    return Demo(args).run()


if __name__ == "__main__":
    sys.exit(main())
