"""What every image_test driver shares: its error, its environment and the argv a command runs."""

import json
import os

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXTRA_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
PROBE_TIMEOUT = 30


class DriverError(Exception):
    """The commands cannot be run (no usable driver, an engine's own failure): the test fails."""


def tool_env():
    """The test's environment, with the usual system directories added to PATH (where the
    engines' CLIs, bwrap and unshare are)."""
    env = dict(os.environ)
    parts = [p for p in env.get("PATH", "").split(":") if p]
    for d in EXTRA_PATH:
        if d not in parts:
            parts.append(d)
    env["PATH"] = ":".join(parts)
    return env


def first_line(text):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def command_argv(command, cfg):
    """The argv a command runs: `command`, or entrypoint + (`args` or cmd); DriverError when
    that is empty."""
    if "command" in command:
        argv = list(command["command"])
    else:
        entrypoint = list(cfg.get("Entrypoint") or [])
        argv = entrypoint + list(command["args"] if "args" in command else cfg.get("Cmd") or [])
    if not argv:
        raise DriverError("the image has no entrypoint or cmd, and the command gives none")
    return argv


def describe(argv):
    return json.dumps(argv)
