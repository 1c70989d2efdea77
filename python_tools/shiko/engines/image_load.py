"""Loading an OCI layout into docker or podman, streaming it (the library of python_tools/load.py).

    tags = effective_tags(run_manifest, replace, add)     # [reference.Reference]
    summary = load(layout, tags, "auto", target)          # prints what it did

The archive is docker_archive.py's (the bytes of the tarball output group), generated on the fly
and streamed into the Docker Engine API (docker_api.py) or `podman load` (podman.py); when the
engine already holds an image with this config digest it is only re-tagged.
"""

import os
import sys
import time

from python_tools.shiko.engines import discovery
from python_tools.shiko.engines.docker_api import Docker
from python_tools.shiko.engines.errors import EngineError
from python_tools.shiko.engines.podman import Podman
from python_tools.shiko.errors import UserError
from python_tools.shiko.oci import docker_archive
from python_tools.shiko.stamp import read_stamp

ENGINES = ("auto", "docker", "podman")


# --- Tags ----------------------------------------------------------------------------------


def resolve_build_tags(manifest):
    """Build-time mode: the run manifest (target and expanded, checked tags)."""
    target = manifest.get("target")
    stamp_values = read_stamp(manifest.get("stamp"), target)
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
            except UserError as e:
                raise UserError("flag %s=%r: %s" % (flag, v, e.problem), target)
    if replace:
        tags = []
    seen = set(t.full for t in tags)
    for _, ref in flag_tags:
        if ref.full not in seen:
            seen.add(ref.full)
            tags.append(ref)
    return tags


# --- Engine choice and loading -------------------------------------------------------------


def choose_engine(engine, target, env=None):
    """The engine to load into: `engine` is auto, docker or podman (see discovery.py)."""
    env = os.environ if env is None else env
    if engine == "podman":
        binary = discovery.podman_binary(env)
        if not binary:
            raise EngineError("--engine=podman: podman is not on PATH (PATH=%s): install podman "
                              "(e.g. apt-get install podman) or use --engine=docker" % env.get("PATH", ""), target)
        return Podman(binary, target)
    host = discovery.docker_host(env)
    if engine == "docker" or host.found:
        return Docker(host.url, target, host.how, env)
    binary = discovery.podman_binary(env)
    if binary:
        return Podman(binary, target)
    raise EngineError("no container engine found: no Docker daemon (DOCKER_HOST is unset and %s does not exist) "
                      "and no podman on PATH; start dockerd or set DOCKER_HOST=unix:///path/to/docker.sock, "
                      "or install podman" % host.socket_path, target)


def load(image, tags, engine_name, target, out=None, platform=None):
    """Loads an image under tags ([Reference]); returns a summary dict.

    image: an OCI layout directory, or the image's parts (shiko/registry/image_blobs.ImageParts:
    no layout; a layer only in the remote cache is fetched only if the engine lacks the image).
    platform: the image to load from a multi-platform layout (an image index).
    """
    out = out or sys.stdout
    if isinstance(image, str):
        archive = docker_archive.Archive(image, tags, target, platform=platform)
    else:
        archive = docker_archive.Archive.from_parts(image, tags, target)
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
