"""Loads an image into docker or podman, streaming it: the program behind `image_load`.

Two modes, both driven by //rules/private:load.bzl.

Build time (action ShikoLoadTags): expand and check the tags, so bad ones fail the build.
  python -m python_tools.load --manifest=M.json --output_run_manifest=R.json
  M.json: {"target": "//pkg:load", "repo_tags": ["app:{STABLE_VERSION}"],
           "stamp": null | {"info_file": ..., "version_file": ...}}
  R.json: {"target": "//pkg:load", "repo_tags": ["app:1.2"]}    (placeholders expanded)
  Tags follow docker_archive.parse_reference; `{KEY}` placeholders follow common.expand_stamp.

Run time (`bazel run //pkg:load [-- FLAGS]`, through the launcher the rule writes):
  load --run_manifest=R.json --layout=DIR [--engine=auto|docker|podman]
       [--repo_tag=REF]... [--add_repo_tag=REF]...
  --repo_tag replaces the rule's repo_tags (repeat it for several); --add_repo_tag adds to them.

What it does:
  1. Reads the OCI layout (one image manifest) and checks every blob's presence and size.
  2. Picks the engine: --engine, or (auto) docker when DOCKER_HOST is set or a Docker socket
     exists (/var/run/docker.sock, $XDG_RUNTIME_DIR/docker.sock), else podman when it is on
     PATH. Docker is spoken to directly (Docker Engine API over the unix socket, or plain
     tcp://); podman through its CLI, which honours CONTAINERS_CONF, CONTAINERS_STORAGE_CONF
     and the rest of its environment.
  3. If the engine already has an image with this config digest (docker: GET
     /images/sha256:<config>/json, podman: `podman image exists`), it only tags it: no byte of
     the image is sent. Otherwise it streams the archive of docker_archive.py (the same bytes
     the tarball output group holds), generated on the fly with the layer blobs read from the
     layout: as a chunked `POST /images/load` body, or into `podman load`'s stdin. Nothing is
     written to disk by this tool.
  4. Prints, on stdout:
       Loaded image: <ref>                (one line per tag)
       Image ID: sha256:<hex>
       Transfer: <N> bytes streamed to <engine> (<blobs> blobs) in <T>s
     or, when the image was there already:
       Transfer: none, image already present in <engine>: re-tagged, 0 bytes sent
A missing engine, an unreachable daemon or an engine error is one line
`ERROR: <target>: <problem and how to fix it>` on stderr and exit code 1.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

from absl import app
from absl import flags

from python_tools import common
from python_tools.shiko.oci import docker_archive

FLAGS = flags.FLAGS

ENGINES = ("auto", "docker", "podman")
DEFAULT_DOCKER_SOCKETS = ("/var/run/docker.sock",)
CHUNK = 1 << 20
API_TIMEOUT = 60.0


def _define_flags():
    flags.DEFINE_string("manifest", None, "Build time: JSON manifest written by Starlark (see module doc).")
    flags.DEFINE_string("output_run_manifest", None, "Build time: the run manifest to write.")
    flags.DEFINE_string("run_manifest", None, "Run time: the run manifest written at build time.")
    flags.DEFINE_string("layout", None, "Run time: the OCI image layout directory to load.")
    flags.DEFINE_enum("engine", "auto", ENGINES, "Where to load the image: docker, podman, or auto "
                      "(docker when DOCKER_HOST is set or a Docker socket exists, else podman).")
    flags.DEFINE_multi_string("repo_tag", [], "Tag the image with this reference instead of the rule's "
                              "repo_tags (repeat for several).")
    flags.DEFINE_multi_string("add_repo_tag", [], "Tag the image with this reference too (repeatable).")


class EngineError(common.UserError):
    """An engine problem: rendered as `<target>: <problem>`."""

    def __init__(self, problem, target=None):
        super().__init__(" ".join(str(problem).split()), target)


def _last_line(text):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "(no output)"


# --- Tags ----------------------------------------------------------------------------------


def resolve_build_tags(manifest):
    """Build-time mode: the run manifest (target and expanded, checked tags)."""
    target = manifest.get("target")
    stamp_values = common.read_stamp(manifest.get("stamp"), target)
    tags = docker_archive.resolve_tags(manifest.get("repo_tags") or [], stamp_values, target)
    return {"target": target, "repo_tags": [t.familiar for t in tags]}


def effective_tags(run_manifest, replace, add):
    """The rule's tags, replaced by `replace` when given, plus `add` ([Reference])."""
    target = run_manifest.get("target")
    tags = docker_archive.resolve_tags(run_manifest.get("repo_tags") or [], None, target)
    flag_tags = []
    for flag, values in (("--repo_tag", replace), ("--add_repo_tag", add)):
        for v in values:
            try:
                flag_tags.append((flag, docker_archive.parse_reference(v, target)))
            except common.UserError as e:
                raise common.UserError("flag %s=%r: %s" % (flag, v, e.problem), target)
    if replace:
        tags = []
    seen = set(t.full for t in tags)
    for _, ref in flag_tags:
        if ref.full not in seen:
            seen.add(ref.full)
            tags.append(ref)
    return tags


# --- Docker Engine API ---------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class _ChunkedBody(object):
    """A file-like writer sending what it gets as HTTP/1.1 chunks of about 1 MiB."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = bytearray()

    def write(self, b):
        if not self.buf and len(b) >= CHUNK:
            self._send(b)
        else:
            self.buf += b
            if len(self.buf) >= CHUNK:
                self._send(bytes(self.buf))
                del self.buf[:]
        return len(b)

    def _send(self, data):
        self.conn.send(b"%X\r\n" % len(data))
        self.conn.send(data)
        self.conn.send(b"\r\n")

    def finish(self):
        if self.buf:
            self._send(bytes(self.buf))
            del self.buf[:]
        self.conn.send(b"0\r\n\r\n")


def docker_host_from_env(env):
    """(url, how it was chosen): DOCKER_HOST, else the first existing default socket."""
    host = env.get("DOCKER_HOST")
    if host:
        return host, "DOCKER_HOST"
    candidates = list(DEFAULT_DOCKER_SOCKETS)
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "docker.sock"))
    for c in candidates:
        if os.path.exists(c):
            return "unix://" + c, "default"
    return "unix://" + candidates[0], "default"


class Docker(object):
    name = "docker"

    def __init__(self, host, target, how="DOCKER_HOST", env=None):
        env = os.environ if env is None else env
        self.host = host
        self.target = target
        self.how = how
        self.where = "docker at %s" % host
        parsed = urllib.parse.urlsplit(host)
        if parsed.scheme == "unix":
            self.unix_path = parsed.path or parsed.netloc
            if not self.unix_path:
                raise self._error("DOCKER_HOST=%s has no socket path; use unix:///path/to/docker.sock" % host)
            self.tcp = None
        elif parsed.scheme in ("tcp", "http"):
            if env.get("DOCKER_TLS_VERIFY"):
                raise self._error("DOCKER_HOST=%s with DOCKER_TLS_VERIFY: TLS is not supported by image_load; "
                                  "use a unix socket (unix:///var/run/docker.sock) or --engine=podman" % host)
            if not parsed.hostname:
                raise self._error("DOCKER_HOST=%s has no host; use tcp://HOST:PORT" % host)
            self.unix_path = None
            self.tcp = (parsed.hostname, parsed.port or 2375)
        else:
            raise self._error("DOCKER_HOST=%s: only unix:// and tcp:// daemons are supported by image_load; "
                              "use a unix socket or --engine=podman" % host)

    def _error(self, problem):
        return EngineError(problem, self.target)

    def _connection(self, timeout):
        if self.unix_path is not None:
            return _UnixHTTPConnection(self.unix_path, timeout)
        return http.client.HTTPConnection(self.tcp[0], self.tcp[1], timeout=timeout)

    def _unreachable(self, e):
        if isinstance(e, FileNotFoundError):
            why = "no such socket"
        elif isinstance(e, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(e, PermissionError):
            why = "permission denied: run as a user in the docker group or point DOCKER_HOST at a socket you may use"
        elif isinstance(e, socket.timeout):
            why = "no answer within %ds" % API_TIMEOUT
        else:
            why = str(e) or type(e).__name__
        if self.how == "DOCKER_HOST":
            fix = "start dockerd there, or point DOCKER_HOST at a running daemon, or use --engine=podman"
        else:
            fix = "start dockerd, or set DOCKER_HOST to a running daemon (e.g. unix:///run/user/1000/docker.sock), or use --engine=podman"
        return self._error("cannot reach the Docker daemon at %s (%s, %s): %s" % (
            self.host, "from DOCKER_HOST" if self.how == "DOCKER_HOST" else "the default", why, fix))

    def request(self, method, path, timeout=API_TIMEOUT):
        conn = self._connection(timeout)
        try:
            conn.request(method, path, headers={"Host": "docker"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e)
        finally:
            conn.close()

    def _api_error(self, what, status, body):
        try:
            message = json.loads(body.decode("utf-8")).get("message")
        except (ValueError, AttributeError, UnicodeDecodeError):
            message = None
        return self._error("%s: %s answered HTTP %d: %s" % (what, self.where, status, message or _last_line(body.decode("utf-8", "replace"))))

    def check(self):
        status, body = self.request("GET", "/_ping")
        if status != 200:
            raise self._api_error("ping", status, body)

    def image_id(self, ref):
        """The image ID of a reference or ID, or None when the daemon has no such image."""
        status, body = self.request("GET", "/images/%s/json" % urllib.parse.quote(ref, safe=":/@"))
        if status == 404:
            return None
        if status != 200:
            raise self._api_error("inspecting %s" % ref, status, body)
        return json.loads(body.decode("utf-8"))["Id"]

    def find(self, archive):
        """The ID of an image the daemon holds with this config (or manifest) digest, or None."""
        # dockerd's own image store: ID = config digest; containerd image store: ID = manifest digest.
        for digest in (archive.config_digest, archive.manifest_digest):
            found = self.image_id(digest)
            if found:
                return found
        return None

    def tag(self, image_id, ref):
        repo = ref.familiar[:len(ref.familiar) - len(ref.tag) - 1]
        path = "/images/%s/tag?%s" % (urllib.parse.quote(image_id, safe=":"),
                                      urllib.parse.urlencode({"repo": repo, "tag": ref.tag}))
        status, body = self.request("POST", path)
        if status not in (200, 201):
            raise self._api_error("tagging %s as %s" % (image_id, ref.familiar), status, body)

    def load(self, archive):
        """Streams the archive as the body of POST /images/load; returns the bytes sent."""
        conn = self._connection(None)  # a large image may take the daemon a while
        try:
            conn.putrequest("POST", "/images/load?quiet=1", skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "docker")
            conn.putheader("Content-Type", "application/x-tar")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        except OSError as e:
            conn.close()
            raise self._unreachable(e)
        body = _ChunkedBody(conn)
        try:
            sent = archive.write(body)
            body.finish()
        except common.UserError:
            conn.close()  # no final chunk: the daemon discards the partial upload
            raise
        except OSError as e:
            # The daemon hung up: its answer may say why.
            try:
                resp = conn.getresponse()
                raise self._api_error("loading", resp.status, resp.read())
            except (OSError, http.client.HTTPException):
                raise self._error("loading: %s closed the connection while the image was sent (%s)" % (self.where, e))
            finally:
                conn.close()
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._error("loading: no answer from %s after the image was sent (%s)" % (self.where, e))
        finally:
            conn.close()
        if resp.status != 200:
            raise self._api_error("loading", resp.status, data)
        for message in _json_stream(data):
            if message.get("error") or message.get("errorDetail"):
                detail = (message.get("errorDetail") or {}).get("message") or message.get("error")
                raise self._error("loading: %s refused the image: %s" % (self.where, detail))
        return sent


def _json_stream(data):
    """The JSON objects of a concatenated JSON stream (the Docker API's progress format)."""
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    pos = 0
    out = []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return out + [{"error": _last_line(text[pos:])}]
        if isinstance(obj, dict):
            out.append(obj)


# --- podman --------------------------------------------------------------------------------


class Podman(object):
    name = "podman"

    def __init__(self, binary, target):
        self.binary = binary
        self.target = target
        self.where = "podman (%s)" % binary

    def _error(self, problem):
        return EngineError(problem, self.target)

    def run(self, *args):
        try:
            return subprocess.run([self.binary] + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except OSError as e:
            raise self._error("cannot run %s: %s" % (self.binary, e))

    def _failed(self, what, r):
        return self._error("%s: `podman %s` failed (exit %d): %s" % (what, what, r.returncode, _last_line(r.stderr or r.stdout)))

    def check(self):
        r = self.run("version", "--format", "{{.Client.Version}}")
        if r.returncode != 0:
            raise self._failed("version", r)

    def find(self, archive):
        hexid = archive.config_digest[len("sha256:"):]
        r = self.run("image", "exists", hexid)
        if r.returncode == 1:
            return None
        if r.returncode != 0:
            raise self._error("`podman image exists` failed (exit %d): %s" % (r.returncode, _last_line(r.stderr)))
        return "sha256:" + hexid

    def image_id(self, ref):
        r = self.run("image", "inspect", "--format", "{{.Id}}", ref)
        if r.returncode != 0:
            return None
        return "sha256:" + r.stdout.strip()

    def tag(self, image_id, ref):
        # Fully qualified: podman would otherwise name a short reference localhost/<name>.
        r = self.run("tag", image_id[len("sha256:"):], ref.full)
        if r.returncode != 0:
            raise self._failed("tag", r)

    def load(self, archive):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen([self.binary, "load"], stdin=subprocess.PIPE, stdout=out, stderr=err)
            except OSError as e:
                raise self._error("cannot run %s: %s" % (self.binary, e))
            sent = None
            failure = None
            try:
                sent = archive.write(proc.stdin)
            except common.UserError:
                proc.kill()  # never let podman finish a partial archive
                proc.wait()
                raise
            except BrokenPipeError as e:
                failure = e
            try:
                proc.stdin.close()
            except BrokenPipeError as e:
                failure = failure or e
            rc = proc.wait()
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
            if rc != 0:
                raise self._error("loading: `podman load` failed (exit %d): %s" % (rc, _last_line(stderr)))
            if failure is not None:
                raise self._error("loading: `podman load` stopped reading the image (%s): %s" % (failure, _last_line(stderr)))
        return sent


# --- Engine choice -------------------------------------------------------------------------


def choose_engine(engine, target, env=None):
    env = os.environ if env is None else env
    if engine == "podman":
        binary = shutil.which("podman", path=env.get("PATH"))
        if not binary:
            raise EngineError("--engine=podman: podman is not on PATH (PATH=%s): install podman "
                              "(e.g. apt-get install podman) or use --engine=docker" % env.get("PATH", ""), target)
        return Podman(binary, target)
    if engine == "docker":
        host, how = docker_host_from_env(env)
        return Docker(host, target, how, env)
    # auto
    host, how = docker_host_from_env(env)
    if how == "DOCKER_HOST" or os.path.exists(urllib.parse.urlsplit(host).path):
        return Docker(host, target, how, env)
    binary = shutil.which("podman", path=env.get("PATH"))
    if binary:
        return Podman(binary, target)
    raise EngineError("no container engine found: no Docker daemon (DOCKER_HOST is unset and %s does not exist) "
                      "and no podman on PATH; start dockerd or set DOCKER_HOST=unix:///path/to/docker.sock, "
                      "or install podman" % urllib.parse.urlsplit(host).path, target)


# --- Main ----------------------------------------------------------------------------------


def load(layout, tags, engine_name, target, out=None):
    """Loads the layout's image under tags ([Reference]); returns a summary dict."""
    out = out or sys.stdout
    archive = docker_archive.Archive(layout, tags, target)
    engine = choose_engine(engine_name, target)
    engine.check()
    start = time.monotonic()
    image_id = engine.find(archive)
    sent = 0
    if image_id:
        for ref in tags:
            engine.tag(image_id, ref)
    else:
        sent = engine.load(archive)
        image_id = engine.find(archive)
        if not image_id and tags:
            image_id = engine.image_id(tags[0].full)
        if not image_id:
            raise EngineError("%s did not keep the image: neither %s nor %s is known to it after loading" % (
                engine.where, archive.config_digest, archive.manifest_digest), target)
    elapsed = time.monotonic() - start
    for ref in tags:
        out.write("Loaded image: %s\n" % ref.familiar)
    out.write("Image ID: %s\n" % image_id)
    if sent:
        out.write("Transfer: %d bytes streamed to %s (%d blobs) in %.2fs\n" % (sent, engine.where, len(archive.blobs), elapsed))
    else:
        out.write("Transfer: none, image already present in %s: re-tagged, 0 bytes sent\n" % engine.where)
    if not tags:
        out.write("(untagged: give image_load repo_tags, or --repo_tag=name:tag)\n")
    out.flush()
    return {"engine": engine.name, "image_id": image_id, "sent": sent, "tags": [t.familiar for t in tags]}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s (flags look like --engine=podman)" % " ".join(argv[1:]))

    if FLAGS.manifest:
        if not FLAGS.output_run_manifest:
            raise app.UsageError("--manifest needs --output_run_manifest")

        def build():
            try:
                manifest = common.read_json(FLAGS.manifest)
            except (OSError, ValueError) as e:
                raise common.UserError("cannot read the tool manifest %s: %s" % (FLAGS.manifest, e))
            common.write_file_atomic(FLAGS.output_run_manifest, common.canonical_json(resolve_build_tags(manifest)))

        common.run_tool(build, [FLAGS.output_run_manifest])
        return

    if not FLAGS.run_manifest or not FLAGS.layout:
        raise app.UsageError("give --run_manifest and --layout (or --manifest and --output_run_manifest)")

    def run():
        try:
            run_manifest = common.read_json(FLAGS.run_manifest)
        except (OSError, ValueError) as e:
            raise common.UserError("cannot read the run manifest %s: %s" % (FLAGS.run_manifest, e))
        target = run_manifest.get("target")
        tags = effective_tags(run_manifest, FLAGS.repo_tag, FLAGS.add_repo_tag)
        load(FLAGS.layout, tags, FLAGS.engine, target)

    common.run_tool(run, [])


if __name__ == "__main__":
    _define_flags()
    app.run(main)
