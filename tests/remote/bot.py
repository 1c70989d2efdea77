"""The smallest correct REAPI worker for the remote-execution tests (a TEST FIXTURE, not product).

BuildGrid ships no worker that can be installed here (buildbox is C++ and not packaged), so the
tests run this one: it speaks the Remote Workers API (google.devtools.remoteworkers.v1test2,
"Bots") to BuildGrid and runs each leased Action like a remote worker would:

  1. CreateBotSession, then UpdateBotSession in a loop (a long poll while idle, every second
     while an action runs, so BuildGrid sees the bot alive and never reaps its session);
  2. for an ACTIVE lease: read the Action (the lease payload is the Action or its Digest), its
     Command and the whole input root from the CAS into a FRESH directory;
  3. run the Command there inside bubblewrap, with the Command's arguments, environment and
     working directory and nothing else: no network, a private /tmp, and the host's python3
     HIDDEN (an empty, non-executable file bound over every /usr/bin/python3*, a tmpfs over
     every /usr/lib/python3*), so an action that quietly needs the host's Python fails here;
  4. upload stdout, stderr and the declared outputs (output_paths, or output_files and
     output_directories as Bazel 4.2.3 sends them: REAPI v2.0) and complete the lease with the
     ActionResult packed in its result.

A CAS or sandbox failure completes the lease with an error status (FAILED_PRECONDITION for a
missing input, INTERNAL otherwise, which BuildGrid retries); a non-zero exit code is an
ordinary ActionResult. The bot is killed by the test with SIGTERM/SIGKILL; bwrap runs with
--die-with-parent so the action dies with it.

Usage (from the BuildGrid venv, which provides grpcio and BuildGrid's generated protos):
    bot.py --server 127.0.0.1:PORT --instance NAME --bot-id NAME --workdir DIR [--show-python]

--show-python leaves the host's python3 visible: a diagnostic that separates "needs the host's
Python" from every other reason an action fails remotely.
"""

import argparse
import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc
from buildgrid._protos.google.rpc import code_pb2

BWRAP = "/usr/bin/bwrap"
# Blobs up to this size travel in batch calls; bigger ones through ByteStream.
BATCH_LIMIT = 1 << 20
CHUNK = 1 << 20
LEASE_PENDING, LEASE_ACTIVE, LEASE_COMPLETED = 1, 2, 4
BOT_OK = 1


class MissingBlob(Exception):
    """An input the Action names is not in the CAS (the client must upload it again)."""


def log(bot_id, message):
    print("%s bot %s: %s" % (time.strftime("%H:%M:%S"), bot_id, message), flush=True)


class Cas:
    """Reads and writes blobs of one instance through CAS batch calls and ByteStream."""

    def __init__(self, channel, instance):
        self.instance = instance
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bs = bytestream_pb2_grpc.ByteStreamStub(channel)

    def read(self, digest):
        if digest.size_bytes == 0:
            return b""
        if digest.size_bytes <= BATCH_LIMIT:
            resp = self.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(
                instance_name=self.instance, digests=[digest]))
            r = resp.responses[0]
            if r.status.code == code_pb2.NOT_FOUND:
                raise MissingBlob("%s/%d" % (digest.hash, digest.size_bytes))
            if r.status.code != code_pb2.OK:
                raise RuntimeError("BatchReadBlobs %s: %s" % (digest.hash, r.status.message))
            data = r.data
        else:
            name = "%s/blobs/%s/%d" % (self.instance, digest.hash, digest.size_bytes)
            try:
                data = b"".join(c.data for c in self.bs.Read(
                    bytestream_pb2.ReadRequest(resource_name=name)))
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    raise MissingBlob("%s/%d" % (digest.hash, digest.size_bytes))
                raise
        if hashlib.sha256(data).hexdigest() != digest.hash:
            raise RuntimeError("CAS returned corrupt data for %s" % digest.hash)
        return data

    def read_message(self, digest, message):
        message.ParseFromString(self.read(digest))
        return message

    def write_all(self, blobs):
        """Uploads {hash: (Digest, bytes)} that the CAS does not hold yet."""
        if not blobs:
            return
        missing = self.cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(
            instance_name=self.instance, blob_digests=[d for d, _ in blobs.values()]))
        small = []
        for d in missing.missing_blob_digests:
            data = blobs[d.hash][1]
            if d.size_bytes <= BATCH_LIMIT:
                small.append(re_pb2.BatchUpdateBlobsRequest.Request(digest=d, data=data))
            else:
                self._stream_write(d, data)
        if small:
            resp = self.cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
                instance_name=self.instance, requests=small))
            for r in resp.responses:
                if r.status.code != code_pb2.OK:
                    raise RuntimeError("BatchUpdateBlobs %s: %s" % (r.digest.hash, r.status.message))

    def _stream_write(self, digest, data):
        name = "%s/uploads/%s/blobs/%s/%d" % (self.instance, uuid.uuid4(), digest.hash,
                                              digest.size_bytes)

        def requests():
            for off in range(0, len(data), CHUNK):
                piece = data[off:off + CHUNK]
                yield bytestream_pb2.WriteRequest(
                    resource_name=name if off == 0 else "", write_offset=off, data=piece,
                    finish_write=off + len(piece) == len(data))

        self.bs.Write(requests())


def digest_of(data, blobs=None):
    """The Digest of data; with blobs, also remembers the bytes there for upload."""
    d = re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    if blobs is not None:
        blobs[d.hash] = (d, data)
    return d


def materialize(cas, digest, path, cache, files=None):
    """Writes the Directory `digest` (and everything below it) at path. With `files` (a
    directory), each file is a hardlink to a read-only copy kept there by digest and mode, read
    from the CAS once per bot (as real workers keep a local CAS cache)."""
    directory = cache.get(digest.hash)
    if directory is None:
        directory = cas.read_message(digest, re_pb2.Directory())
        cache[digest.hash] = directory
    os.makedirs(path, exist_ok=True)
    for f in directory.files:
        target = os.path.join(path, f.name)
        mode = 0o555 if f.is_executable else 0o444
        if files is None:
            with open(target, "wb") as out:
                out.write(cas.read(f.digest))
            os.chmod(target, mode)
            continue
        kept = os.path.join(files, "%s-%d-%o" % (f.digest.hash, f.digest.size_bytes, mode))
        if not os.path.exists(kept):
            tmp = "%s.tmp-%s" % (kept, uuid.uuid4().hex[:8])
            with open(tmp, "wb") as out:
                out.write(cas.read(f.digest))
            os.chmod(tmp, mode)
            os.replace(tmp, kept)
        os.link(kept, target)
    for s in directory.symlinks:
        os.symlink(s.target, os.path.join(path, s.name))
    for d in directory.directories:
        materialize(cas, d.digest, os.path.join(path, d.name), cache, files)


def file_node(path, name, blobs):
    with open(path, "rb") as f:
        data = f.read()
    mode = os.stat(path).st_mode
    return re_pb2.FileNode(name=name, digest=digest_of(data, blobs),
                           is_executable=bool(mode & stat.S_IXUSR))


def directory_message(path, blobs, children):
    """The Directory at path (sorted, as REAPI requires); subdirectories go to children."""
    d = re_pb2.Directory()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.islink(full):
            d.symlinks.add(name=name, target=os.readlink(full))
        elif os.path.isdir(full):
            child = directory_message(full, blobs, children)
            children.append(child)
            d.directories.add(name=name, digest=digest_of(child.SerializeToString()))
        else:
            d.files.append(file_node(full, name, blobs))
    return d


def collect_outputs(workdir, command, result, blobs):
    """Adds the outputs the Command declares (those the action made) to result."""
    if command.output_paths:
        paths = [(p, None) for p in command.output_paths]
    else:
        paths = ([(p, "file") for p in command.output_files]
                 + [(p, "dir") for p in command.output_directories])
    for rel, kind in sorted(paths):
        full = os.path.join(workdir, rel)
        if not os.path.lexists(full):
            continue
        # REAPI v2.0 outputs (output_files/output_directories) follow symlinks; output_paths
        # report them as symlinks.
        if os.path.islink(full) and kind is None:
            target = os.readlink(full)
            (result.output_directory_symlinks if os.path.isdir(full)
             else result.output_file_symlinks).add(path=rel, target=target)
        elif os.path.isdir(full):
            children = []
            root = directory_message(full, blobs, children)
            tree = re_pb2.Tree(root=root, children=children)
            result.output_directories.add(path=rel,
                                          tree_digest=digest_of(tree.SerializeToString(), blobs))
        else:
            node = file_node(full, rel, blobs)
            result.output_files.add(path=rel, digest=node.digest, is_executable=node.is_executable)


def hidden_python_args(empty_file):
    """bwrap arguments that hide the host's python3 from the action."""
    args = []
    for p in sorted(glob.glob("/usr/bin/python3*")):
        args += ["--ro-bind", empty_file, os.path.realpath(p)]
    for p in sorted(glob.glob("/usr/lib/python3*")):
        if os.path.isdir(p) and not os.path.islink(p):
            args += ["--tmpfs", p]
    return args


class Bot:
    def __init__(self, server, instance, bot_id, workdir, hide_python=True):
        self.instance = instance
        self.hide_python = hide_python
        self.bot_id = bot_id
        self.workdir = workdir
        self.channel = grpc.insecure_channel(server, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        self.bots = bots_pb2_grpc.BotsStub(self.channel)
        self.cas = Cas(self.channel, instance)
        self.files = os.path.join(workdir, "files")
        os.makedirs(self.files, exist_ok=True)
        self.empty = os.path.join(workdir, "empty")
        open(self.empty, "w").close()
        os.chmod(self.empty, 0o444)
        self.current = None  # (lease id, thread, [lease result or None])

    def session(self):
        s = bots_pb2.BotSession(bot_id=self.bot_id, status=BOT_OK)
        device = s.worker.devices.add(handle=self.bot_id)
        device.properties.add(key="OSFamily", value="Linux")
        device.properties.add(key="ISA", value="x86-64")
        return s

    def create_session(self):
        s = self.bots.CreateBotSession(bots_pb2.CreateBotSessionRequest(
            parent=self.instance, bot_session=self.session()), timeout=60)
        log(self.bot_id, "session %s" % s.name)
        return s

    def run(self):
        s = self.create_session()
        while True:
            self.sync(s)
            busy = self.current is not None
            try:
                s = self.bots.UpdateBotSession(bots_pb2.UpdateBotSessionRequest(
                    name=s.name, bot_session=s), timeout=5 if busy else 30)
            except grpc.RpcError as e:
                # A busy or restarting server: keep the session (and the running lease), retry.
                # A session the server reaped is gone: start a new one (its lease was requeued).
                log(self.bot_id, "UpdateBotSession: %s: %s" % (e.code(), e.details()))
                if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    s = self.create_session()
                    self.current = None
                time.sleep(1)
                continue
            self.start_new(s)
            if self.current is not None:
                time.sleep(1)

    def sync(self, s):
        """Marks the running lease COMPLETED (with its result) once its thread finished."""
        if self.current is None:
            return
        lease_id, thread, outcome = self.current
        if thread.is_alive():
            return
        for lease in s.leases:
            if lease.id == lease_id:
                lease.state = LEASE_COMPLETED
                status, result = outcome[0]
                lease.status.CopyFrom(status)
                if result is not None:
                    lease.result.Pack(result)
        self.current = None

    def start_new(self, s):
        # Drop the leases the server no longer wants (completed ones it acknowledged).
        keep = [l for l in s.leases if l.state in (LEASE_PENDING, LEASE_ACTIVE)]
        del s.leases[:]
        s.leases.extend(keep)
        for lease in s.leases:
            if lease.state == LEASE_PENDING:
                lease.state = LEASE_ACTIVE
            if self.current is None or self.current[0] != lease.id:
                if self.current is not None:
                    continue
                outcome = [None]
                t = threading.Thread(target=self.execute_lease, args=(lease, outcome), daemon=True)
                self.current = (lease.id, t, outcome)
                t.start()

    def execute_lease(self, lease, outcome):
        from buildgrid._protos.google.rpc import status_pb2
        started = time.monotonic()
        try:
            result = self.execute(lease)
            outcome[0] = (status_pb2.Status(code=code_pb2.OK), result)
            log(self.bot_id, "lease %s: exit %d in %.1fs" % (lease.id, result.exit_code,
                                                              time.monotonic() - started))
        except MissingBlob as e:
            outcome[0] = (status_pb2.Status(code=code_pb2.FAILED_PRECONDITION,
                                            message="missing input %s" % e), None)
            log(self.bot_id, "lease %s: missing input %s" % (lease.id, e))
        except Exception as e:  # noqa: BLE001 - reported to the scheduler, which retries
            outcome[0] = (status_pb2.Status(code=code_pb2.INTERNAL, message=repr(e)), None)
            log(self.bot_id, "lease %s: INTERNAL %r" % (lease.id, e))

    def execute(self, lease):
        action = re_pb2.Action()
        if lease.payload.Is(re_pb2.Action.DESCRIPTOR):
            lease.payload.Unpack(action)
        else:
            digest = re_pb2.Digest()
            lease.payload.Unpack(digest)
            self.cas.read_message(digest, action)
        command = self.cas.read_message(action.command_digest, re_pb2.Command())
        root = os.path.join(self.workdir, "exec-%s" % uuid.uuid4().hex[:12])
        try:
            materialize(self.cas, action.input_root_digest, root, {}, self.files)
            cwd = os.path.join(root, command.working_directory)
            outputs = list(command.output_paths) or (list(command.output_files)
                                                     + list(command.output_directories))
            for rel in outputs:
                os.makedirs(os.path.dirname(os.path.join(cwd, rel)), exist_ok=True)
            for rel in command.output_directories:
                os.makedirs(os.path.join(cwd, rel), exist_ok=True)
            argv = [BWRAP, "--die-with-parent", "--unshare-net", "--unshare-pid",
                    "--unshare-ipc", "--unshare-uts", "--ro-bind", "/", "/", "--dev", "/dev",
                    "--proc", "/proc", "--tmpfs", "/tmp"]
            if self.hide_python:
                argv += hidden_python_args(self.empty)
            argv += ["--bind", root, root, "--chdir", cwd, "--clearenv"]
            for var in command.environment_variables:
                argv += ["--setenv", var.name, var.value]
            argv += ["--"] + list(command.arguments)
            timeout = action.timeout.seconds or None
            log(self.bot_id, "lease %s: run %s" % (lease.id, command.arguments[0] if command.arguments else "?"))
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, timeout=timeout)
                exit_code, out, err = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as e:
                exit_code, out, err = 124, e.stdout or b"", (e.stderr or b"") + b"\nbot: timeout\n"
            blobs = {}
            result = re_pb2.ActionResult(exit_code=exit_code)
            result.stdout_digest.CopyFrom(digest_of(out, blobs))
            result.stderr_digest.CopyFrom(digest_of(err, blobs))
            if exit_code == 0:
                collect_outputs(cwd, command, result, blobs)
            result.execution_metadata.worker = self.bot_id
            self.cas.write_all(blobs)
            return result
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", required=True)
    p.add_argument("--instance", required=True)
    p.add_argument("--bot-id", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--show-python", action="store_true",
                   help="diagnostic: do not hide the host's python3 from actions")
    a = p.parse_args(argv)
    if not os.access(BWRAP, os.X_OK):
        sys.exit("bot: %s not found: apt-get install -y bubblewrap" % BWRAP)
    os.makedirs(a.workdir, exist_ok=True)
    Bot(a.server, a.instance, a.bot_id, a.workdir, hide_python=not a.show_python).run()


if __name__ == "__main__":
    main(sys.argv[1:])
