"""Bad input as one clear line, and removing what a failed tool run had started to write.

Every tool reads one JSON manifest written by Starlark and never guesses paths. A problem with
the user's input is raised as `UserError`; the entry point (`shiko/cli.py`) prints it as one
line naming the target, attribute and value, removes the tool's outputs, and exits 1.
"""

import os


class UserError(Exception):
    """Bad input: printed as `ERROR: <target>: attribute '<attr>': <value>: <problem>`."""

    def __init__(self, problem, target=None, attr=None, value=None):
        self.problem = problem
        self.target = target
        self.attr = attr
        self.value = value
        super().__init__(self.render())

    def render(self):
        parts = []
        if self.target:
            parts.append(str(self.target))
        if self.attr:
            parts.append("attribute '%s'" % self.attr)
        if self.value is not None:
            parts.append(repr(self.value))
        parts.append(self.problem)
        return ": ".join(parts)


def remove_outputs(paths):
    """Removes files or directories a failed tool run may have left behind."""
    for p in paths:
        if not p:
            continue
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                import shutil  # only failed runs get here

                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.unlink(p)
        except OSError:
            pass
