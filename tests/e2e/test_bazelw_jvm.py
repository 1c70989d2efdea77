"""./bazelw's JVM options for Bazel 4.2.3's server (Debian's JDK 17): class data sharing, the
parallel garbage collector, C1 only with SHA-256 from NSS, no performance counters.

No archive yet: a server started by `info` gets no archive option, one started by a build
writes the archive of the classes it loaded when it exits; the next servers map it (the
JVM's own check: the file is in the server's memory map); a running server keeps the option
it started with (no restart); SHIKO_BAZEL_CDS=0 adds nothing. The same for the parallel
garbage collector: every server gets -XX:+UseParallelGC, SHIKO_BAZEL_GC=default leaves the
JVM's own choice, and a running server keeps what it started with. For the compiler: every
server gets -XX:TieredStopAtLevel=1 and -XX:CICompilerCount=1 with a provider list (written
once per JDK, after a probe) that puts SunPKCS11 on NSS first for SHA-256; a build's server has
NSS's softokn in its memory map; SHIKO_BAZEL_JIT=default adds none of them; a JDK whose probe
fails gets none, and the failure is remembered. Every server gets -XX:-UsePerfData, and
SHIKO_BAZEL_PERFDATA=1 leaves it out. Each server is a fresh output base and a cheap command
(`info release`, `build //platforms:all`); the archive and the provider list go to a temporary
XDG_CACHE_HOME. And docs/install.md's recipe for other workspaces (plain Bazel): run as written,
its server gets the same options and hashes through NSS.
"""

import os
import re
import shutil
import subprocess

import pytest

from checkout import remove_tree
from conftest import REPO_ROOT

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


def _jit_args(argv):
    """The compiler and security-provider options the server started with."""
    return [a for a in argv if a.startswith(("-XX:TieredStopAtLevel=", "-XX:CICompilerCount=",
                                             "-Djava.security.properties="))]


def _archive_args(argv):
    """The JVM's archive options (the server's own arguments repeat them as --host_jvm_args)."""
    return [a for a in argv if a.startswith(("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit="))]


def test_a_build_server_writes_the_archive_and_the_next_ones_map_it(bazel, tmp_path):
    xdg = str(tmp_path / "xdg")
    cds_dir = os.path.join(xdg, "rules_shiko", "bazel-cds")
    env = dict(os.environ, XDG_CACHE_HOME=xdg)
    for k in ("SHIKO_BAZEL_CDS", "SHIKO_BAZEL_GC", "SHIKO_BAZEL_JIT", "SHIKO_BAZEL_PERFDATA", "JAVA_HOME"):
        env.pop(k, None)
    off = dict(env, SHIKO_BAZEL_CDS="0", SHIKO_BAZEL_GC="default", SHIKO_BAZEL_JIT="default",
               SHIKO_BAZEL_PERFDATA="1")
    jvm_dir = os.path.join(xdg, "rules_shiko", "bazel-jvm")
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
        assert argv.count("-XX:-UsePerfData") == 1, argv
        jit = _jit_args(argv)
        security = [a.split("=", 1)[1] for a in jit if a.startswith("-Djava.security.properties=")]
        assert len(jit) == 3 and len(security) == 1, argv
        assert "-XX:TieredStopAtLevel=1" in jit and "-XX:CICompilerCount=1" in jit, argv
        assert os.path.dirname(security[0]) == jvm_dir, security
        with open(security[0]) as f:
            providers = [l.strip() for l in f if l.startswith("security.provider.")]
        first = providers[0].split("=", 1)[1].split(" ", 1)
        assert first[0] == "SunPKCS11" and providers[1] == "security.provider.2=SUN", providers
        with open(first[1]) as f:
            assert "CKM_SHA256" in f.read().split(), first[1]
        stop(0)
        assert not os.path.exists(cds_dir) or not os.listdir(cds_dir)

        # A build: the server writes the archive when it exits, and a second command on it
        # keeps that option (the same server answers).
        pid, argv, _ = start(1, "build", "//platforms:all")
        dump = [a for a in argv if a.startswith("-XX:ArchiveClassesAtExit=" + cds_dir + "/")]
        assert len(dump) == 1 and len(_archive_args(argv)) == 1, argv
        jsa = dump[0].split("=", 1)[1]
        assert not os.path.exists(jsa)  # written when the server exits
        assert _jit_args(argv) == jit, argv
        assert start(1)[0] == pid
        # The build hashed its inputs through NSS: its soft token is in the server's memory.
        assert "libsoftokn3" in _server(bases[1])[2], "NSS was not loaded by the build's server"
        stop(1)
        assert os.path.getsize(jsa) > 10 << 20, jsa

        # The next server maps it.
        pid, argv, maps = start(2)
        assert _archive_args(argv) == ["-XX:SharedArchiveFile=" + jsa], argv
        assert jsa in maps, "the server did not map %s" % jsa
        assert argv.count("-XX:+UseParallelGC") == 1, argv
        assert _jit_args(argv) == jit, argv
        assert argv.count("-XX:-UsePerfData") == 1, argv
        stop(2)

        # Turned off: no archive option, not mapped, the JVM's own collector; a later command
        # without the variables keeps the running server as it is (no restart, still neither).
        pid, argv, maps = start(3)
        assert not _archive_args(argv), argv
        assert jsa not in maps
        assert not [a for a in argv if a.startswith("-XX:+Use") and a.endswith("GC")], argv
        assert not _jit_args(argv), argv
        assert "-XX:-UsePerfData" not in argv, argv
        envs[bases[3]] = env
        pid2, argv, _ = start(3)
        assert pid2 == pid and not _archive_args(argv), argv
        assert "-XX:+UseParallelGC" not in argv and not _jit_args(argv), argv
        assert "-XX:-UsePerfData" not in argv, argv
    finally:
        for i, ob in enumerate(bases):
            if os.path.isdir(ob):
                stop(i)  # with the environment it started with: the same startup options
                remove_tree(ob)


def test_a_jdk_whose_sha256_probe_fails_gets_no_compiler_options(bazel, tmp_path):
    """A JDK on which NSS does not give SHA-256 (here: a `java` that answers nothing) keeps the
    JVM's own tiered compilation: C1 alone would hash at a tenth of the speed. No provider list
    is left behind, and the failure is remembered, so the next command does not probe again."""
    assert shutil.which("java"), "no java on PATH"
    real = os.path.realpath(shutil.which("java"))
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "conf" / "security").mkdir(parents=True)
    with open(os.path.join(os.path.dirname(os.path.dirname(real)), "conf", "security",
                           "java.security")) as f:
        (home / "conf" / "security" / "java.security").write_text(f.read())
    calls = tmp_path / "calls"
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\necho \"$@\" >> %s\nexit 1\n" % calls)
    java.chmod(0o755)
    xdg = tmp_path / "xdg"
    env = dict(os.environ, XDG_CACHE_HOME=str(xdg), JAVA_HOME=str(home))
    env.pop("SHIKO_BAZEL_JIT", None)
    # `--version` is the client's own answer (no server, no JDK): only ./bazelw's probe runs.
    startup = ["--output_base=" + str(tmp_path / "ob")]
    runs = [bazel(startup=startup + ["--version"], env=env) for _ in range(2)]
    for res in runs:
        assert res.stdout.startswith("bazel "), res.stdout
    if not calls.exists() and not (xdg / "rules_shiko" / "bazel-jvm").exists():
        # Not Debian's Bazel 4.2.3 (a modern Bazel with its own JDK): ./bazelw adds nothing.
        return
    probes = calls.read_text().splitlines()
    assert len(probes) == 1, probes  # the second command remembered the failure
    assert "-XX:TieredStopAtLevel=1" in probes[0] and "Probe.java" in probes[0], probes
    left = sorted(os.listdir(xdg / "rules_shiko" / "bazel-jvm"))
    assert [n for n in left if n.endswith(".unusable")], left
    assert not [n for n in left if n.endswith((".security", ".cfg")) or n.startswith(".probe")], left
    assert "NSS did not work" in runs[0].stderr, runs[0].stderr
    assert "NSS did not work" not in runs[1].stderr, runs[1].stderr


def _install_md_block(marker):
    """The fenced code block right after `<!-- marker -->` in docs/install.md."""
    with open(os.path.join(REPO_ROOT, "docs", "install.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- %s -->\n```\w*\n(.*?)\n```" % re.escape(marker), text, re.S)
    assert m, "docs/install.md has no code block after <!-- %s -->" % marker
    return m.group(1) + "\n"


def test_the_install_recipe_for_other_workspaces(tmp_path):
    """docs/install.md's recipe for other repositories on Bazel 4.2.3 (plain Bazel, no
    ./bazelw), run as written but into a temporary directory: the server starts with the four
    options, a build hashes its input through NSS (the soft token is in the server's memory map)
    and gets the right output, and the provider list keeps the JDK's providers in order."""
    bazel4 = shutil.which("bazel-4")
    if not bazel4 or not os.path.isdir("/usr/share/bazel"):
        pytest.fail("Debian's Bazel 4.2.3 (bazel-4) is missing: ./bazelw installs it", pytrace=False)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "WORKSPACE").write_text("")
    (ws / "input.txt").write_text("hello\n" * 100000)
    (ws / "BUILD").write_text('genrule(name = "copy", srcs = ["input.txt"], outs = ["copy.txt"], '
                              'cmd = "cp $< $@")\n')
    jvm_dir = tmp_path / "jvm"
    script = _install_md_block("jvm-recipe")
    lines = script.splitlines(True)
    assert lines[0].startswith("dir="), lines[0]
    script = "set -eu\ndir=%s\n" % jvm_dir + "".join(lines[1:])
    res = subprocess.run(["bash", "-c", script], cwd=str(ws), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert res.returncode == 0, res.stderr
    rc = (ws / ".bazelrc").read_text().splitlines()
    security = "%s/sha256-nss.security" % jvm_dir
    assert rc == ["startup --host_jvm_args=-XX:TieredStopAtLevel=1",
                  "startup --host_jvm_args=-XX:CICompilerCount=1",
                  "startup --host_jvm_args=-Djava.security.properties=" + security,
                  "startup --host_jvm_args=-XX:-UsePerfData"], rc
    with open(security) as f:
        providers = [l.strip() for l in f if l.strip()]
    java = os.path.realpath(shutil.which("java"))
    with open(os.path.join(os.path.dirname(os.path.dirname(java)), "conf", "security",
                           "java.security")) as f:
        jdk = sorted((l.strip() for l in f if re.match(r"security\.provider\.\d+=", l)),
                     key=lambda l: int(l.split("=", 1)[0].rsplit(".", 1)[1]))
    assert providers[0] == "security.provider.1=SunPKCS11 %s/sha256-nss.cfg" % jvm_dir, providers
    assert [p.split("=", 1)[1] for p in providers[1:]] == [p.split("=", 1)[1] for p in jdk]
    assert [p.split("=", 1)[0] for p in providers] == [
        "security.provider.%d" % i for i in range(1, len(jdk) + 2)], providers

    ob = str(tmp_path / "ob")
    run = lambda *a: subprocess.run([bazel4, "--output_base=" + ob, "--max_idle_secs=120"] + list(a),  # noqa: E731
                                    cwd=str(ws), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, timeout=600)
    try:
        res = run("build", "--symlink_prefix=/", "//:copy")
        assert res.returncode == 0, res.stderr[-3000:]
        pid, argv, maps = _server(ob)
        assert _jit_args(argv) == ["-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1",
                                   "-Djava.security.properties=" + security], argv
        assert "-XX:-UsePerfData" in argv, argv
        assert "libsoftokn3" in maps, "NSS was not loaded by the build's server"
        out = run("info", "bazel-bin").stdout.strip()
        assert (ws / "input.txt").read_text() == open(os.path.join(out, "copy.txt")).read()
    finally:
        run("shutdown")
        remove_tree(str(tmp_path / "ob"))
