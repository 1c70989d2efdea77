"""Blob transfers: streaming uploads that restart or resume, verified streaming downloads.

Blobs stream from and to disk in 1 MiB pieces, hashed on the way. An upload that fails midway is
restarted (monolithic, one PUT) or resumed from the registry's last acknowledged offset (chunked
PATCHes), at most `RetryPolicy.attempts` times; a download is verified against its digest and
size before it is kept, and retried from the start after a short read or a reset.
"""

import os
import re

from python_tools.shiko.files import CHUNK, new_sha256, sha256_file
from python_tools.shiko.registry.errors import DigestMismatch, RegistryError, Retryable
from python_tools.shiko.registry.transport import RETRYABLE_EXC, FileBody, StreamBody, exc_text


def upload(session, repo, digest, path, scopes, size=None, progress=None, chunk_size=0):
    """Uploads a blob from a file, streaming. Restarts (or resumes) after failures.

    `path` may also be a remote blob source (an object with `open()`, e.g. a layer of a pulled
    base streamed from its registry: image_blobs.RemoteBlob): it is streamed into one PUT
    (never in chunks), verified as it passes, and re-opened when the upload restarts.

    progress(n) is called with each piece of bytes sent (negative to undo a failed attempt).
    Returns the number of bytes sent in total (retries included).
    """
    local = isinstance(path, str)
    if size is None:
        size = os.path.getsize(path) if local else path.size
    if not local:
        chunk_size = 0
    sent_total = [0]

    def count(n):
        if n > 0:
            sent_total[0] += n  # bytes on the wire (undone progress is not subtracted)
        if progress:
            progress(n)

    what = "upload blob %s" % digest
    attempt = 0
    while True:
        attempt += 1
        sent_this = [0]

        def count_attempt(n):
            sent_this[0] += n
            count(n)

        try:
            resp = session.request("POST", "/v2/%s/blobs/uploads/" % repo, scopes=scopes, ok=(202,),
                                what="start " + what)
            loc = session.absolute(resp.header("location") or "")
            if not resp.header("location"):
                raise RegistryError("registry %s: start %s: no Location header" % (session.registry, what))
            if chunk_size and chunk_size < size:
                loc = _upload_chunks(session, loc, path, size, scopes, what, count_attempt, chunk_size)
                final = session.request("PUT", _add_query(loc, "digest", digest), scopes=scopes,
                                     ok=(201, 204), what="finish " + what, retry=False)
            else:
                body = FileBody(path, 0, size, count_attempt) if local else StreamBody(path, size, count_attempt)
                final = session.request("PUT", _add_query(loc, "digest", digest),
                                     headers={"Content-Type": "application/octet-stream"},
                                     body=body, scopes=scopes, ok=(201, 204), what=what, retry=False)
                if body.sha256 and "sha256:" + body.sha256 != digest:
                    raise DigestMismatch("blob %s: the local file %s has sha256:%s (corrupt layout?)"
                                         % (digest, path, body.sha256))
            got = final.header("docker-content-digest")
            if got and got != digest:
                raise DigestMismatch("registry %s: %s: the registry stored %s" % (session.registry, what, got))
            return sent_total[0]
        except DigestMismatch:
            raise
        except RegistryError as e:
            # 404 BLOB_UPLOAD_UNKNOWN/INVALID: the session broke (or expired): start anew.
            session_lost = e.status == 404 and "BLOB_UPLOAD_" in str(e)
            # 400 DIGEST_INVALID with a good local file: the bytes were damaged on the way
            # (or a broken piece was appended twice): start anew.
            damaged = False
            if e.status == 400 and "DIGEST_INVALID" in str(e) and local:
                got, _ = sha256_file(path)
                if "sha256:" + got != digest:
                    raise DigestMismatch("blob %s: the local file %s has sha256:%s (corrupt layout?)"
                                         % (digest, path, got))
                damaged = True
            if e.status is not None and not (e.status >= 500 or e.status == 429 or session_lost or damaged):
                raise
            reason, retry_after, status = str(e), e.retry_after, e.status
        if attempt >= session.retry.attempts:
            raise RegistryError("%s (gave up after %d upload attempts)" % (reason, attempt), status)
        session.retried()
        try:
            d = session.retry.delay(attempt, retry_after)
        except ValueError as ve:
            raise RegistryError("%s; %s" % (reason, ve), status)
        session.log("%s; restarting the upload in %.1f s" % (reason, d))
        if progress:
            progress(-sent_this[0])
        session.retry.sleep(d)

def _upload_chunks(session, loc, path, size, scopes, what, progress, chunk_size):
    """PATCH pieces; on a failed piece, ask the registry where it is and resume from there."""
    offset = 0
    failures = 0
    while offset < size:
        n = min(chunk_size, size - offset)
        piece = [0]

        def count_piece(k, piece=piece):
            piece[0] += k
            progress(k)

        body = FileBody(path, offset, n, count_piece)
        try:
            resp = session.request("PATCH", loc, headers={"Content-Type": "application/octet-stream",
                                                       "Content-Range": "%d-%d" % (offset, offset + n - 1)},
                                body=body, scopes=scopes, ok=(202,), what=what, retry=False)
            loc = session.absolute(resp.header("location") or loc)
            offset = _range_end(resp.header("range"), offset + n)
        except RegistryError as e:
            if e.status is not None and not (e.status >= 500 or e.status == 429):
                raise
            failures += 1
            if failures >= session.retry.attempts:
                raise
            progress(-piece[0])
            session.retried()
            try:
                session.retry.sleep(session.retry.delay(failures, e.retry_after))
            except ValueError as ve:
                raise RegistryError("%s; %s" % (e, ve), e.status)
            status = session.request("GET", loc, scopes=scopes, ok=(204,), what="status of " + what)
            loc = session.absolute(status.header("location") or loc)
            new = _range_end(status.header("range"), 0)
            if new != offset:
                progress(new - offset)  # part of the failed piece kept, or bytes the registry lost
            offset = new
    return loc

def download(session, repo, digest, dest, scopes, size=None, progress=None):
    """Downloads a blob to dest (via dest + '.part'), verifying digest and size."""
    what = "GET blob %s" % digest
    tmp = dest + ".part"
    attempt = 0
    while True:
        attempt += 1
        got_bytes = [0]
        try:
            resp = session.request("GET", "/v2/%s/blobs/%s" % (repo, digest), scopes=scopes, ok=(200,),
                                what=what, stream=True)
            h = new_sha256()
            n = 0
            with open(tmp, "wb") as f:
                try:
                    while True:
                        buf = resp.raw.read(CHUNK)
                        if not buf:
                            break
                        f.write(buf)
                        h.update(buf)
                        n += len(buf)
                        got_bytes[0] += len(buf)
                        if progress:
                            progress(len(buf))
                        if size is not None and n > size:
                            break
                finally:
                    resp.raw.close()
                    session.connections.drop_for(resp.url)
            if size is not None and n < size:
                raise Retryable("short read: %d of %d bytes" % (n, size))
            got = "sha256:" + h.hexdigest()
            if got != digest or (size is not None and n != size):
                _unlink(tmp)
                raise DigestMismatch("registry %s: blob %s of %s: digest mismatch: got %s (%d bytes%s)"
                                     % (session.registry, digest, repo, got, n,
                                        "" if size is None else ", expected %d" % size))
            os.replace(tmp, dest)
            return n
        except DigestMismatch:
            _unlink(tmp)
            raise
        except RegistryError:
            _unlink(tmp)
            raise
        except (Retryable,) + RETRYABLE_EXC as e:
            _unlink(tmp)
            reason = exc_text(e) if not isinstance(e, Retryable) else str(e)
        if progress:
            progress(-got_bytes[0])
        if attempt >= session.retry.attempts:
            raise RegistryError("registry %s: %s: %s (gave up after %d attempts)"
                                % (session.registry, what, reason, attempt))
        session.retried()
        session.retry.sleep(session.retry.delay(attempt))


def _add_query(url, key, value):
    import urllib.parse  # lazily: only uploads need it

    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode([(key, value)])


def _range_end(value, default):
    """`Range: 0-1234` (inclusive) -> 1235 (next offset to send)."""
    if not value:
        return default
    m = re.match(r"^(?:bytes=)?(\d+)-(\d+)$", value.strip())
    if not m:
        return default
    return int(m.group(2)) + 1


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
