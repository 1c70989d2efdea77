"""./bazelw's class data sharing archive for Bazel 4.2.3's server (Debian's JDK 17).

The first server writes the archive of the classes it loaded when it exits; the next servers
map it (the JVM's own check: the file is in the server's memory map); SHIKO_BAZEL_CDS=0 adds
nothing. Each server is a fresh output base started by `info release` (a few seconds); the
archive goes to a temporary XDG_CACHE_HOME.
"""

import os

from checkout import remove_tree

JAR = "/usr/share/bazel/A-server.jar"


def _server(output_base):
    """(argv, memory map) of the output base's running server."""
    with open(os.path.join(output_base, "server", "server.pid.txt")) as f:
        pid = f.read().strip()
    with open("/proc/%s/cmdline" % pid, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open("/proc/%s/maps" % pid) as f:
        maps = f.read()
    return argv, maps


def test_first_server_writes_the_archive_and_the_next_ones_map_it(bazel, tmp_path):
    xdg = str(tmp_path / "xdg")
    cds_dir = os.path.join(xdg, "rules_shiko", "bazel-cds")
    env = dict(os.environ, XDG_CACHE_HOME=xdg)
    env.pop("SHIKO_BAZEL_CDS", None)
    bases = [str(tmp_path / ("ob%d" % i)) for i in range(3)]
    envs = {bases[0]: env, bases[1]: env, bases[2]: dict(env, SHIKO_BAZEL_CDS="0")}
    try:
        startup = ["--output_base=" + bases[0], "--max_idle_secs=120"]
        bazel("info", "release", startup=startup, env=env)
        argv, _ = _server(bases[0])
        if JAR not in argv:
            # Not Debian's Bazel 4.2.3 (a modern Bazel with its own JDK): ./bazelw adds nothing.
            assert not [a for a in argv if "Archive" in a], argv
            return
        dump = [a for a in argv if a.startswith("-XX:ArchiveClassesAtExit=")]
        assert len(dump) == 1 and dump[0].startswith("-XX:ArchiveClassesAtExit=" + cds_dir + "/"), argv
        jsa = dump[0].split("=", 1)[1]
        assert not os.path.exists(jsa)  # written when the server exits
        bazel("shutdown", startup=startup, env=env)
        assert os.path.getsize(jsa) > 10 << 20, jsa

        # The next server maps it: no dump, the archive in its memory map.
        startup = ["--output_base=" + bases[1], "--max_idle_secs=120"]
        bazel("info", "release", startup=startup, env=env)
        argv, maps = _server(bases[1])
        assert "-XX:SharedArchiveFile=" + jsa in argv, argv
        assert not [a for a in argv if "ArchiveClassesAtExit" in a], argv
        assert jsa in maps, "the server did not map %s" % jsa
        bazel("shutdown", startup=startup, env=env)

        # Turned off: no archive argument at all.
        startup = ["--output_base=" + bases[2], "--max_idle_secs=120"]
        bazel("info", "release", startup=startup, env=envs[bases[2]])
        argv, maps = _server(bases[2])
        assert not [a for a in argv if "Archive" in a], argv
        assert jsa not in maps
    finally:
        for ob in bases:
            if os.path.isdir(ob):
                # With the environment it started with (the same startup options: no restart).
                bazel("shutdown", startup=["--output_base=" + ob, "--max_idle_secs=120"], env=envs[ob],
                      check=False, timeout=120)
                remove_tree(ob)
