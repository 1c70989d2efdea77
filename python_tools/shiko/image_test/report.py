"""image_test results: one PASS line, or FAIL with expected, actual, layer and note lines."""

import json

MAX_SHOWN = 600


class Result(object):
    def __init__(self, subject, what, ok, expected=None, actual=None, layer=None, note=None):
        self.subject = subject
        self.what = what
        self.ok = ok
        self.expected = expected
        self.actual = actual
        self.layer = layer
        self.note = note

    def render(self):
        head = "%s %s: %s" % ("PASS" if self.ok else "FAIL", self.subject, self.what)
        if self.ok:
            return head + ("" if self.expected is None else " = %s" % short(self.expected))
        lines = [head]
        if self.expected is not None:
            lines.append("    expected: %s" % block(self.expected))
        if self.actual is not None:
            lines.append("    actual:   %s" % block(self.actual))
        if self.layer:
            lines.append("    layer:    %s" % self.layer)
        if self.note:
            lines.append("    note:     %s" % self.note)
        return "\n".join(lines)


def short(text, limit=120):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def block(text):
    text = str(text)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "... (%d more characters)" % (len(text) - MAX_SHOWN)
    return text.replace("\n", "\n              ")


def mode_str(mode):
    return "%04o" % mode


def shown(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def describe_bytes(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "%d bytes of binary data" % len(data)
    if len(text) > 200:
        return "%d bytes, starting %s" % (len(data), shown(text[:200]))
    return shown(text)
