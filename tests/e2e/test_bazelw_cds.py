"""./bazelw's class data sharing archive for Bazel 4.2.3's server (Debian's JDK 17).

No archive yet: a server started by `info` gets no archive option, one started by a build
writes the archive of the classes it loaded when it exits; the next servers map it (the
JVM's own check: the file is in the server's memory map); a running server keeps the option
it started with (no restart); SHIKO_BAZEL_CDS=0 adds nothing. The same for the parallel
garbage collector: every server gets -XX:+UseParallelGC, SHIKO_BAZEL_GC=default leaves the
JVM's own choice, and a running server keeps what it started with. Each server is a fresh output
base and a cheap command (`info release`, `build //platforms:all`); the archive goes to a
temporary XDG_CACHE_HOME.
"""

import os

from checkout import remove_tree

JAR = "/usr/share/bazel/A-server.jar"


def _server(output_base):
    """(pid, argv, memory map) of the output base's running server."""
    with open(os.path.join(output_base, "server", "server.pid.txt")) as f:
        pid = f.read().strip()
    with open("/proc/%s/cmdline" % pid, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open("/proc/%s/maps" % pid) as f:
        maps = f.read()
    return pid, argv, maps


def _archive_args(argv):
    """The JVM's archive options (the server's own arguments repeat them as --host_jvm_args)."""
    return [a for a in argv if a.startswith(("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit="))]


def test_a_build_server_writes_the_archive_and_the_next_ones_map_it(bazel, tmp_path):
    xdg = str(tmp_path / "xdg")
    cds_dir = os.path.join(xdg, "rules_shiko", "bazel-cds")
    env = dict(os.environ, XDG_CACHE_HOME=xdg)
    env.pop("SHIKO_BAZEL_CDS", None)
    env.pop("SHIKO_BAZEL_GC", None)
    off = dict(env, SHIKO_BAZEL_CDS="0", SHIKO_BAZEL_GC="default")
    bases = [str(tmp_path / ("ob%d" % i)) for i in range(4)]
    envs = {bases[0]: env, bases[1]: env, bases[2]: env, bases[3]: off}

    def start(i, *args):
        startup = ["--output_base=" + bases[i], "--max_idle_secs=120"]
        bazel(*(args or ("info", "release")), startup=startup, env=envs[bases[i]])
        return _server(bases[i])

    def stop(i, env=None):
        bazel("shutdown", startup=["--output_base=" + bases[i], "--max_idle_secs=120"],
              env=env or envs[bases[i]], check=False, timeout=300)

    try:
        # `info` with no archive yet: no option (it would archive too few classes).
        pid, argv, _ = start(0)
        if JAR not in argv:
            # Not Debian's Bazel 4.2.3 (a modern Bazel with its own JDK): ./bazelw adds nothing.
            assert not _archive_args(argv), argv
            return
        assert not _archive_args(argv), argv
        assert "-XX:+UseParallelGC" in argv, argv
        stop(0)
        assert not os.path.exists(cds_dir) or not os.listdir(cds_dir)

        # A build: the server writes the archive when it exits, and a second command on it
        # keeps that option (the same server answers).
        pid, argv, _ = start(1, "build", "//platforms:all")
        dump = [a for a in argv if a.startswith("-XX:ArchiveClassesAtExit=" + cds_dir + "/")]
        assert len(dump) == 1 and len(_archive_args(argv)) == 1, argv
        jsa = dump[0].split("=", 1)[1]
        assert not os.path.exists(jsa)  # written when the server exits
        assert start(1)[0] == pid
        stop(1)
        assert os.path.getsize(jsa) > 10 << 20, jsa

        # The next server maps it.
        pid, argv, maps = start(2)
        assert _archive_args(argv) == ["-XX:SharedArchiveFile=" + jsa], argv
        assert jsa in maps, "the server did not map %s" % jsa
        assert argv.count("-XX:+UseParallelGC") == 1, argv
        stop(2)

        # Turned off: no archive option, not mapped, the JVM's own collector; a later command
        # without the variables keeps the running server as it is (no restart, still neither).
        pid, argv, maps = start(3)
        assert not _archive_args(argv), argv
        assert jsa not in maps
        assert not [a for a in argv if a.startswith("-XX:+Use") and a.endswith("GC")], argv
        envs[bases[3]] = env
        pid2, argv, _ = start(3)
        assert pid2 == pid and not _archive_args(argv), argv
        assert "-XX:+UseParallelGC" not in argv, argv
    finally:
        for i, ob in enumerate(bases):
            if os.path.isdir(ob):
                stop(i)  # with the environment it started with: the same startup options
                remove_tree(ob)
