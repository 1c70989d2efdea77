"""Pushing an OCI image layout to a registry: what to push, in which order, and where to.

What it pushes: the layout's index.json must name one descriptor: an image manifest, or an
image index (multi-platform), whose child manifests are pushed first. Order: every blob
(config and layers of all manifests) in parallel, `jobs` at a time, largest first: HEAD
first and skipped when present; else mounted from another repository of the same registry
when one is known to have it (`mount_from`, and the repositories this machine pushed it to
or pulled it from before, remembered by sources.py); else uploaded, streamed from disk. Then
the manifests: an index's children by digest, then the top manifest under each tag (by digest
when there is none): a tag never points at a manifest whose blobs aren't all there, and no
manifest is sent twice under the same name.

A re-push first HEADs the top manifest under each name (tag, or digest): when a name already
resolves to it (and, for an index, each child is there by digest), the registry holds the whole
image (a registry accepts a manifest only once what it references is there), so no blob is
looked at and only the names that don't resolve to it yet are PUT; a re-push of an unchanged
image is one HEAD. As crane does; a registry that answers otherwise (no Docker-Content-Digest,
an error) gets the full push.
"""

import json
import os
import queue
import threading

from python_tools.shiko import threads
from python_tools.shiko.errors import UserError
from python_tools.shiko.oci import media_types, reference
from python_tools.shiko.oci.layout import MAX_INDEX_DEPTH, Layout
from python_tools.shiko.registry import sources, tokens
from python_tools.shiko.registry.errors import AuthError, RegistryError
from python_tools.shiko.registry.progress import Cancelled, Progress, human

# --- Reading what to push ----------------------------------------------------------------------


class Plan(object):
    """What a layout holds to push: its top descriptor, its manifests and its blobs."""

    def __init__(self):
        self.top = None  # descriptor named by index.json
        self.manifests = []  # (descriptor, bytes, media type), children first
        self.blobs = {}  # digest -> (descriptor, path)
        self.sources = {}  # registry -> {digest: [repositories]} known to hold it (pulled bases)


def read_plan(layout_dir, target, attr="layout"):
    """The Plan of a layout (every manifest verified, every blob there with its size)."""
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
    if depth > MAX_INDEX_DEPTH:
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
        media = media_types.OCI_INDEX if "manifests" in obj else media_types.OCI_MANIFEST
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


# --- Pushing -------------------------------------------------------------------------------


class Result(object):
    """Counts of a push, updated by the blob threads."""

    def __init__(self):
        self.pushed = 0
        self.skipped = 0
        self.mounted = 0
        self.bytes_sent = 0
        self.already = False  # the registry held the whole image: no blob was looked at
        self.lock = threading.Lock()


def push_blob(client, repo, scopes, digest, desc, path, mount_sources, progress, result, chunk_size):
    """One blob: skipped when there, else mounted from one of mount_sources, else uploaded."""
    size = desc["size"]
    if client.blob_size(repo, digest, scopes) is not None:
        with result.lock:
            result.skipped += 1
        return
    for src in mount_sources:
        if src != repo and client.mount_blob(repo, digest, src, scopes):
            with result.lock:
                result.mounted += 1
            return
    # A blob not on this machine (image_blobs.RemoteBlob) streams from its origin into the upload.
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
    """Pushes plan to ref (a reference.Reference without tag/digest); returns (digest, Result)."""
    remembered = sources.remembered_sources(ref.registry, list(plan.blobs), env)
    for d, repos in plan.sources.get(ref.registry, {}).items():  # a pulled base's own repository first
        remembered[d] = repos + [r for r in remembered.get(d, []) if r not in repos]
    try:
        return _push(plan, ref, tags, client, jobs, mount_from, chunk_size, live, env, remembered)
    except AuthError:
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
    scopes = tokens.push_scopes(repo, candidates)

    def sources_for(d):
        own = [r for r in remembered.get(d, []) if r in candidates]
        return [r for r in mount_from if r != repo] + [r for r in own if r not in mount_from]

    result = Result()
    top_desc, top_data, top_media = plan.manifests[-1]
    names = tags or [top_desc["digest"]]
    present, whole = _already_there(client, repo, plan, names, scopes)
    if whole:
        # The registry holds this very image (it accepts a manifest only once its blobs and an
        # index's children are there): no blob to HEAD, nothing to send but the missing tags.
        result.skipped = len(digests)
        result.already = True
    else:
        _push_blobs(client, repo, scopes, plan, digests, sources_for, result, live, jobs, chunk_size)
        # Child manifests (of an index) by digest.
        for desc, data, media in plan.manifests[:-1]:
            client.put_manifest(repo, desc["digest"], data, media, scopes)
    # The top manifest under each tag (the registry stores it by digest too), or by digest when
    # there is no tag: each manifest is sent once per name it gets, like docker and skopeo do,
    # and not at all under a name that already resolves to it.
    for name in names:
        if name not in present:
            client.put_manifest(repo, name, top_data, top_media, scopes)
    sources.remember_sources(ref.registry, repo, digests, env)
    return top_desc["digest"], result


def _already_there(client, repo, plan, names, scopes):
    """(the names among `names` that already resolve to the top manifest, whether the registry
    holds the whole image). One HEAD per name, plus one per child of an index when a name
    matched; when no tag matched, the image is taken as new (no HEAD by digest). A registry
    that answers none of this as expected (no Docker-Content-Digest, errors): nothing is taken
    as present, and the push goes on as usual."""
    top = plan.manifests[-1][0]["digest"]
    try:
        present = set(n for n in names if client.manifest_digest(repo, n, scopes) == top)
        whole = bool(present)
        for desc, _, _ in plan.manifests[:-1] if whole else ():
            if client.manifest_digest(repo, desc["digest"], scopes) != desc["digest"]:
                whole = False
                break
    except RegistryError:
        return set(), False
    return present, whole


def _push_blobs(client, repo, scopes, plan, digests, sources_for, result, live, jobs, chunk_size):
    """Every blob of the plan, `jobs` at a time, largest first (push_blob)."""
    progress = Progress(live)
    order = sorted(digests, key=lambda d: -plan.blobs[d][0]["size"])
    progress.start(len(order))
    try:
        finished = queue.SimpleQueue()
        with threads.Pool(jobs, done=finished) as pool:
            for d in order:
                pool.submit(push_blob, client, repo, scopes, d, plan.blobs[d][0], plan.blobs[d][1],
                            sources_for(d), progress, result, chunk_size)
            first_error = None
            for _ in order:  # as they finish (cancelled ones too)
                try:
                    finished.get().result()
                except (Cancelled, threads.Cancelled):
                    pass
                except BaseException as e:  # stop the other uploads, report the first failure
                    if first_error is None:
                        first_error = e
                        progress.cancel.set()
                        pool.cancel_pending()
            if first_error is not None:
                raise first_error
    finally:
        progress.stop()


# --- Destination ---------------------------------------------------------------------------


def read_tags_file(path, target):
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UserError("cannot read the tags file: %s" % e.strerror, target, "remote_tags_file", path)
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def resolve_destination(target, repository, default_repository, tags, default_tags, tags_file):
    """(Reference, tags) from the run-time flags and the target's defaults; UserError when bad."""
    attr = "--repository" if repository else "repository"
    value = repository or default_repository
    if not value:
        raise UserError("no repository to push to: give --repository=REGISTRY/REPO "
                        "(or set `repository` on the target)", target, "repository", "")
    try:
        ref = reference.parse(value, allow_tag=False, allow_digest=False)
    except ValueError as e:
        raise UserError("%s (expected REGISTRY/REPO, e.g. 127.0.0.1:5000/app)" % e, target, attr, value)
    if tags:
        out, tag_attr = list(tags), "--tag"
    else:
        out, tag_attr = list(default_tags), "tags"
        if tags_file:
            out += read_tags_file(tags_file, target)
    for t in out:
        if not reference.TAG_RE.match(t):
            raise UserError("not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", target, tag_attr, t)
    uniq = []
    for t in out:
        if t not in uniq:
            uniq.append(t)
    return ref, uniq


def summary(ref, result, elapsed, retries, plan, tags):
    """The summary line: blobs pushed/skipped/mounted, bytes sent, time, retries, manifests, tags."""
    return ("%s: %d blobs pushed, %d skipped, %d mounted; %d bytes sent (%s) in %.2f s%s; %s%s%s"
            % (ref.name, result.pushed, result.skipped, result.mounted, result.bytes_sent,
               human(result.bytes_sent), elapsed,
               ", %d retries" % retries if retries else "",
               "%d manifest%s" % (len(plan.manifests), "s" if len(plan.manifests) > 1 else ""),
               ("; tags: " + ", ".join(tags)) if tags else "; no tags",
               "; the registry already had this image" if result.already else ""))
