"""podman through its CLI: check, find, tag and load (the archive streamed into `podman load`).

podman reads its configuration from the environment it inherits (CONTAINERS_CONF,
CONTAINERS_STORAGE_CONF, CONTAINER_HOST, ...): nothing is passed explicitly.
"""

import subprocess
import tempfile

from python_tools.shiko.engines.errors import EngineError, last_line
from python_tools.shiko.errors import UserError


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
        return self._error("%s: `podman %s` failed (exit %d): %s" % (what, what, r.returncode, last_line(r.stderr or r.stdout)))

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
            raise self._error("`podman image exists` failed (exit %d): %s" % (r.returncode, last_line(r.stderr)))
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
            except UserError:
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
                raise self._error("loading: `podman load` failed (exit %d): %s" % (rc, last_line(stderr)))
            if failure is not None:
                raise self._error("loading: `podman load` stopped reading the image (%s): %s" % (failure, last_line(stderr)))
        return sent
