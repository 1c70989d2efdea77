"""Engine problems, reported as one line naming the target and how to fix them."""

from python_tools.shiko.errors import UserError


class EngineError(UserError):
    """An engine problem: rendered as `<target>: <problem>`."""

    def __init__(self, problem, target=None):
        super().__init__(" ".join(str(problem).split()), target)


def last_line(text):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "(no output)"
