"""Pushes an OCI image layout to a registry (what `bazel run` of an `image_push` target runs).

Usage (the launcher written by image_push passes the --layout/--default_* flags; users add
their own after `--`):
  bazel run //pkg:push -- [--repository=REGISTRY/REPO] [--tag=T ...] [--insecure] [--ca_file=CA]
      [--jobs=4] [--retries=6] [--retry_delay=0.5] [--chunk_size=0] [--mount_from=REPO ...]
      [--progress=auto|tty|plain]
  python -m python_tools.push --layout=DIR --repository=R [--tag=T ...]

What it pushes: the layout's index.json must name one descriptor: an image manifest, or an
image index (multi-platform), whose child manifests are pushed first. Order: every blob
(config and layers of all manifests) in parallel, `--jobs` at a time, largest first: HEAD
first and skipped when present; else mounted from another repository of the same registry
when one is known to have it (`--mount_from`, and the repositories this machine pushed it to
or pulled it from before, remembered in ~/.cache/rules_shiko/blob_sources.json); else uploaded,
streamed from disk. Then the manifests: an index's children by digest, then the top manifest
under each tag (by digest when there is none): a tag never points at a manifest whose blobs
aren't all there, and no manifest is sent twice under the same name.

Output: on a terminal, one status line with each active blob's bytes and rate; otherwise
nothing until the summary line on stderr (blobs pushed/skipped/mounted, bytes sent, retries).
The last line, on stdout, is `REGISTRY/REPO@sha256:<hex>`: the pushed manifest's digest, checked
to be the one in the image's `.digest` file (--digest_file).

Failures: bad flags print `ERROR: <target>: attribute '<flag>': <value>: <problem>`; registry
failures (after the retries registry.py makes) print one line naming the blob or manifest, the
registry and the HTTP status. Exit status 1 either way. Credentials come from the docker/podman
configuration (registry.py) and are never printed.
"""

import json
import os
import sys
import threading
import time
from concurrent import futures

from absl import app, flags

from python_tools import common
from python_tools.shiko.registry import client as registry
from python_tools.shiko.oci.layout import DIGEST_RE, Layout

FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_string("layout", None, "The OCI image layout directory to push.")
    flags.DEFINE_string("digest_file", None, "The image's .digest file: the pushed digest must equal it.")
    flags.DEFINE_string("target", None, "Label of the image_push target (for messages).")
    flags.DEFINE_string("repository", None, "REGISTRY/REPO to push to (overrides the target's `repository`).")
    flags.DEFINE_multi_string("tag", [], "Tag to set (repeatable); replaces the target's `tags` and tags file.")
    flags.DEFINE_string("default_repository", None, "The target's `repository` (set by the launcher).")
    flags.DEFINE_multi_string("default_tag", [], "The target's `tags` (set by the launcher).")
    flags.DEFINE_string("default_tags_file", None, "The target's `remote_tags_file`: one tag per line.")
    flags.DEFINE_bool("insecure", False, "Allow plain HTTP and unverified TLS for a non-loopback registry.")
    flags.DEFINE_string("ca_file", None, "PEM file of CA certificates to trust (in addition to the system's).")
    flags.DEFINE_integer("jobs", 4, "Blobs pushed in parallel.", lower_bound=1)
    flags.DEFINE_integer("retries", 6, "Attempts per operation (connection resets, 5xx, 429).", lower_bound=1)
    flags.DEFINE_float("retry_delay", 0.5, "First backoff delay in seconds (doubles each retry).", lower_bound=0)
    flags.DEFINE_integer("chunk_size", 0, "Upload blobs in PATCH chunks of this many bytes (0: one PUT).",
                         lower_bound=0)
    flags.DEFINE_multi_string("mount_from", [], "Repository on the same registry to mount blobs from.")
    flags.DEFINE_enum("progress", "auto", ["auto", "tty", "plain"],
                      "auto: a live status line when stderr is a terminal; plain: the summary only.")


# --- Reading what to push ----------------------------------------------------------------------


class Plan(object):
    def __init__(self):
        self.top = None  # descriptor named by index.json
        self.manifests = []  # (descriptor, bytes, media type), children first
        self.blobs = {}  # digest -> (descriptor, path)


def read_plan(layout_dir, target, attr="layout"):
    layout = Layout(layout_dir, target=target, attr=attr)
    index = layout.check_layout()
    descs = index.get("manifests")
    if not isinstance(descs, list) or len(descs) != 1 or not isinstance(descs[0], dict):
        raise layout.error("index.json must name exactly one image or image index to push (it names %d)"
                           % (len(descs) if isinstance(descs, list) else 0))
    plan = Plan()
    plan.top = descs[0]
    _collect(layout, plan.top, plan, set(), 0)
    return plan


def _collect(layout, desc, plan, seen, depth):
    if depth > 8:
        raise layout.error("image indexes nest too deeply")
    digest = desc.get("digest")
    if digest in seen:
        return
    seen.add(digest)
    path = layout.verify(desc)
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise layout.error("manifest %s is not JSON" % digest)
    if not isinstance(obj, dict):
        raise layout.error("manifest %s is not a JSON object" % digest)
    media = desc.get("mediaType") or obj.get("mediaType")
    if not media:
        media = registry.OCI_INDEX if "manifests" in obj else registry.OCI_MANIFEST
    if isinstance(obj.get("manifests"), list):
        for child in obj["manifests"]:
            if not isinstance(child, dict):
                raise layout.error("index %s has a malformed descriptor" % digest)
            _collect(layout, child, plan, seen, depth + 1)
    else:
        parts = []
        if isinstance(obj.get("config"), dict):
            parts.append(obj["config"])
        layers = obj.get("layers") or []
        if not isinstance(layers, list):
            raise layout.error("manifest %s has a malformed layers list" % digest)
        parts += layers
        for b in parts:
            bpath = layout.blob_path(b)
            if not os.path.isfile(bpath):
                raise layout.error("blob %s is missing" % b.get("digest"))
            size = os.path.getsize(bpath)
            if size != b.get("size"):
                raise layout.error("blob %s size mismatch (descriptor says %r, file has %d)"
                                   % (b.get("digest"), b.get("size"), size))
            plan.blobs.setdefault(b["digest"], (b, bpath))
    plan.manifests.append((desc, data, media))


# --- Progress ------------------------------------------------------------------------------


def human(n):
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1000.0
    return "%.1f GB" % n


class Progress(object):
    """Per-blob counters; a live status line on a terminal."""

    def __init__(self, live, stream=sys.stderr):
        self.live = live
        self.stream = stream
        self.lock = threading.Lock()
        self.active = {}  # digest -> [sent, size, started]
        self.done = 0
        self.total = 0
        self.cancel = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._width = 0

    def start(self, total):
        self.total = total
        if self.live:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def begin(self, digest, size):
        with self.lock:
            self.active[digest] = [0, size, time.monotonic()]

    def add(self, digest, n):
        if self.cancel.is_set():
            raise Cancelled()
        with self.lock:
            a = self.active.get(digest)
            if a:
                a[0] += n

    def end(self, digest):
        with self.lock:
            self.active.pop(digest, None)
            self.done += 1

    def _line(self):
        now = time.monotonic()
        parts = []
        with self.lock:
            items = sorted(self.active.items(), key=lambda kv: -kv[1][1])
            done = self.done
        for digest, (sent, size, started) in items[:3]:
            rate = sent / max(1e-3, now - started)
            parts.append("%s %s/%s %s/s" % (digest[7:19], human(sent), human(size), human(rate)))
        if len(items) > 3:
            parts.append("+%d more" % (len(items) - 3))
        return "blobs %d/%d  %s" % (done, self.total, "  ".join(parts))

    def _loop(self):
        while not self._stop.wait(0.2):
            line = self._line()[:200]
            self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
            self.stream.flush()
            self._width = len(line)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join()
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


class Cancelled(BaseException):
    """Raised inside an upload when another blob has failed (stops streaming promptly)."""


# --- Pushing -------------------------------------------------------------------------------


class Result(object):
    def __init__(self):
        self.pushed = 0
        self.skipped = 0
        self.mounted = 0
        self.bytes_sent = 0
        self.lock = threading.Lock()


def push_blob(client, repo, scopes, digest, desc, path, sources, progress, result, chunk_size):
    size = desc["size"]
    if client.blob_size(repo, digest, scopes) is not None:
        with result.lock:
            result.skipped += 1
        return
    for src in sources:
        if src != repo and client.mount_blob(repo, digest, src, scopes):
            with result.lock:
                result.mounted += 1
            return
    progress.begin(digest, size)
    try:
        sent = client.upload_blob(repo, digest, path, scopes, size=size,
                                  progress=lambda n: progress.add(digest, n), chunk_size=chunk_size)
    finally:
        progress.end(digest)
    with result.lock:
        result.pushed += 1
        result.bytes_sent += sent


def push(plan, ref, tags, client, jobs=4, mount_from=(), chunk_size=0, live=False, env=None,
         log=lambda msg: None):
    """Pushes plan to ref (a registry.Reference without tag/digest); returns (digest, Result)."""
    remembered = registry.remembered_sources(ref.registry, list(plan.blobs), env)
    try:
        return _push(plan, ref, tags, client, jobs, mount_from, chunk_size, live, env, remembered)
    except registry.AuthError:
        if not remembered:
            raise
        # Remembered repositories may be ones these credentials can't read (a token server may
        # refuse the whole token then): push again without them.
        log("registry %s: retrying without mounts from remembered repositories" % ref.registry)
        return _push(plan, ref, tags, client, jobs, mount_from, chunk_size, live, env, {})


def _push(plan, ref, tags, client, jobs, mount_from, chunk_size, live, env, remembered):
    repo = ref.repository
    digests = list(plan.blobs)
    # Mount candidates: --mount_from first, then remembered repositories (a few, most used first).
    counts = {}
    for d in digests:
        for r in remembered.get(d, []):
            if r != repo:
                counts[r] = counts.get(r, 0) + 1
    candidates = [r for r in mount_from if r != repo]
    for r, _ in sorted(counts.items(), key=lambda kv: -kv[1]):
        if r not in candidates and len(candidates) < 8:
            candidates.append(r)
    scopes = registry.push_scopes(repo, candidates)

    def sources_for(d):
        own = [r for r in remembered.get(d, []) if r in candidates]
        return [r for r in mount_from if r != repo] + [r for r in own if r not in mount_from]

    result = Result()
    progress = Progress(live)
    order = sorted(digests, key=lambda d: -plan.blobs[d][0]["size"])
    progress.start(len(order))
    try:
        with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            pending = {pool.submit(push_blob, client, repo, scopes, d, plan.blobs[d][0], plan.blobs[d][1],
                                   sources_for(d), progress, result, chunk_size): d for d in order}
            first_error = None
            for fut in futures.as_completed(pending):
                try:
                    fut.result()
                except Cancelled:
                    pass
                except BaseException as e:  # stop the other uploads, report the first failure
                    if first_error is None:
                        first_error = e
                        progress.cancel.set()
                        for other in pending:
                            other.cancel()
            if first_error is not None:
                raise first_error
    finally:
        progress.stop()
    # Child manifests (of an index) by digest; the top manifest under each tag (the registry
    # stores it by digest too), or by digest when there is no tag: each manifest is sent once
    # per name it gets, like docker and skopeo do.
    for desc, data, media in plan.manifests[:-1]:
        client.put_manifest(repo, desc["digest"], data, media, scopes)
    top_desc, top_data, top_media = plan.manifests[-1]
    for name in tags or [top_desc["digest"]]:
        client.put_manifest(repo, name, top_data, top_media, scopes)
    registry.remember_sources(ref.registry, repo, digests, env)
    return top_desc["digest"], result


# --- CLI -----------------------------------------------------------------------------------


def read_tags_file(path, target):
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise common.UserError("cannot read the tags file: %s" % e.strerror, target, "remote_tags_file", path)
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def resolve_destination(target, repository, default_repository, tags, default_tags, tags_file):
    """(Reference, tags) from the run-time flags and the target's defaults; UserError when bad."""
    attr = "--repository" if repository else "repository"
    value = repository or default_repository
    if not value:
        raise common.UserError("no repository to push to: give --repository=REGISTRY/REPO "
                               "(or set `repository` on the target)", target, "repository", "")
    try:
        ref = registry.parse_reference(value, allow_tag=False, allow_digest=False)
    except ValueError as e:
        raise common.UserError("%s (expected REGISTRY/REPO, e.g. 127.0.0.1:5000/app)" % e, target, attr, value)
    if tags:
        out, tag_attr = list(tags), "--tag"
    else:
        out, tag_attr = list(default_tags), "tags"
        if tags_file:
            out += read_tags_file(tags_file, target)
    for t in out:
        if not registry.TAG_RE.match(t):
            raise common.UserError("not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", target, tag_attr, t)
    uniq = []
    for t in out:
        if t not in uniq:
            uniq.append(t)
    return ref, uniq


def main(argv):
    del argv
    target = FLAGS.target or FLAGS.layout or "push"
    if not FLAGS.layout:
        sys.stderr.write("ERROR: %s: --layout is required\n" % target)
        sys.exit(2)
    # `bazel run` starts us in the runfiles tree; paths given by the user are relative to where
    # they typed the command.
    wd = os.environ.get("BUILD_WORKING_DIRECTORY")
    ca_file = FLAGS.ca_file
    if ca_file and wd and not os.path.isabs(ca_file):
        ca_file = os.path.join(wd, ca_file)
    start = time.monotonic()

    def run():
        ref, tags = resolve_destination(target, FLAGS.repository, FLAGS.default_repository, FLAGS.tag,
                                        FLAGS.default_tag, FLAGS.default_tags_file)
        for m in FLAGS.mount_from:
            if not registry.REPOSITORY_RE.match(m):
                raise common.UserError("not a repository name on the same registry", target, "--mount_from", m)
        plan = read_plan(FLAGS.layout, target)
        digest = plan.top["digest"]
        if FLAGS.digest_file:
            with open(FLAGS.digest_file) as f:
                want = f.read().strip()
            if want != digest:
                raise common.UserError("the layout's manifest is %s but the image's .digest says %s"
                                       % (digest, want), target, "image", FLAGS.layout)
        if not DIGEST_RE.match(digest):
            raise common.UserError("unsupported digest", target, "image", digest)
        live = FLAGS.progress == "tty" or (FLAGS.progress == "auto" and sys.stderr.isatty())

        def log(msg):
            # Retries are reported live on a terminal; otherwise the summary counts them.
            if live:
                sys.stderr.write("\r\x1b[K" + msg + "\n")
                sys.stderr.flush()

        client = registry.Client(ref.registry, insecure=FLAGS.insecure, ca_file=ca_file,
                                 retry=registry.RetryPolicy(attempts=FLAGS.retries, base_delay=FLAGS.retry_delay),
                                 log=log)
        try:
            pushed, result = push(plan, ref, tags, client, jobs=FLAGS.jobs, mount_from=FLAGS.mount_from,
                                  chunk_size=FLAGS.chunk_size, live=live, log=log)
        except registry.RegistryError as e:
            sys.stderr.write("ERROR: %s: push to %s failed: %s\n" % (target, ref.name, e))
            sys.exit(1)
        finally:
            client.close()
        elapsed = time.monotonic() - start
        sys.stderr.write(
            "%s: %d blobs pushed, %d skipped, %d mounted; %d bytes sent (%s) in %.2f s%s; %s%s\n"
            % (ref.name, result.pushed, result.skipped, result.mounted, result.bytes_sent,
               human(result.bytes_sent), elapsed,
               ", %d retries" % client.retries if client.retries else "",
               "%d manifest%s" % (len(plan.manifests), "s" if len(plan.manifests) > 1 else ""),
               ("; tags: " + ", ".join(tags)) if tags else "; no tags"))
        sys.stderr.flush()
        sys.stdout.write("%s@%s\n" % (ref.name, pushed))
        sys.stdout.flush()

    common.run_tool(run, [])


if __name__ == "__main__":
    _define_flags()
    app.run(main)
