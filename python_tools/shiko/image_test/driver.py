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
    """The argv a command runs: `command`, or entrypoint + (`args` or cmd)."""
    if "command" in command:
        return list(command["command"])
    entrypoint = list(cfg.get("Entrypoint") or [])
    if "args" in command:
        return entrypoint + list(command["args"])
    return entrypoint + list(cfg.get("Cmd") or [])


def describe(argv):
    return json.dumps(argv)
