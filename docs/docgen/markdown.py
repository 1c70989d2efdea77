"""Markdown: escaping for GitHub, code spans, tables, and the rows of attribute and argument tables."""

import inspect
import re

from .values import Attr, source_literal, starlark

ATTR_HEADER = ["Name", "Type", "Default", "Mandatory", "Description"]
ARG_HEADER = ["Name", "Default", "Mandatory", "Description"]

# The value of an attribute that has no explicit `default`, per attr.* function.
IMPLICIT_DEFAULTS = {
    "bool": False,
    "int": 0,
    "string": "",
    "label": None,
    "output": None,
    "int_list": [],
    "label_list": [],
    "output_list": [],
    "string_list": [],
    "label_keyed_string_dict": {},
    "string_dict": {},
    "string_keyed_label_dict": {},
    "string_list_dict": {},
}


def text_of(value):
    """A doc value as text (docs built from Opaque expressions keep their source)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return inspect.cleandoc(value)
    return starlark(value)


_CODE_SPAN = re.compile(r"(`+).+?\1")


def escape_tags(line):
    """`<` outside code spans as `&lt;`: GitHub drops `<hex>` as an unknown HTML tag."""
    out = []
    pos = 0
    for m in _CODE_SPAN.finditer(line):
        out += [line[pos:m.start()].replace("<", "&lt;"), m.group(0)]
        pos = m.end()
    out.append(line[pos:].replace("<", "&lt;"))
    return "".join(out)


def prose(text):
    """A docstring as markdown: `<` escaped except in code spans, indented and fenced code blocks."""
    out = []
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append(line)
        elif fenced or line.startswith("    ") or line.startswith("\t"):
            out.append(line)
        else:
            out.append(escape_tags(line))
    return "\n".join(out)


def paragraph(text):
    """[prose, blank line] of a non-empty text; [] for an empty one."""
    return [prose(text), ""] if text else []


def cell(text):
    """Text for one markdown table cell: one line, pipes and tags escaped."""
    return escape_tags(" ".join(str(text).split())).replace("|", "\\|")


def code(text):
    """Inline code; the fence grows when the text holds backticks."""
    text = str(text)
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return "%s%s%s%s%s" % (fence, pad, text, pad, fence)


def table(header, rows):
    out = ["| %s |" % " | ".join(header), "|" + "---|" * len(header)]
    out += ["| %s |" % " | ".join(cell(c) for c in row) for row in rows]
    return out


def anchor(heading):
    """GitHub's anchor of a heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


# --- Rows of attribute (ATTR_HEADER) and argument (ARG_HEADER) tables -----------------------------


def attribute_rows(attrs, skip=()):
    """Table rows of the public attributes of an attrs dict (not `_x`, not those in `skip`)."""
    rows = []
    names = [n for n in attrs if isinstance(n, str)]
    if "name" in names:  # an explicit `name` (tag classes): first, as rules' implicit one
        names = ["name"] + [n for n in names if n != "name"]
    for name in names:
        a = attrs[name]
        if name.startswith("_") or name in skip:
            continue
        if not isinstance(a, Attr):
            rows.append([code(name), "?", "", "", text_of(getattr(a, "text", a))])
            continue
        kw = a.kwargs
        mandatory = kw.get("mandatory") is True
        doc = text_of(kw.get("doc"))
        values = kw.get("values")
        if isinstance(values, list) and values:
            doc = (doc + " " if doc else "") + "One of: %s." % ", ".join(code(starlark(v)) for v in values)
        if mandatory:
            default = ""
        elif "default" in kw:
            default = code(starlark(kw["default"]))
        else:
            default = code(starlark(IMPLICIT_DEFAULTS.get(a.kind)))
        rows.append([code(name), a.kind, default, "yes" if mandatory else "no", doc])
    return rows


def name_row(what):
    """The row of a rule's implicit `name` attribute; `what` is "target" or "repository"."""
    return [code("name"), "name", "", "yes", "A unique name for this %s." % what]


def argument_rows(func, docs, skip=()):
    """Table rows of a def's named parameters (not those in `skip`), documented by `docs`."""
    return [[
        code(name),
        "" if default is None else code(source_literal(default)),
        "yes" if default is None else "no",
        docs.get(name, ""),
    ] for name, default in func.params() if name not in skip]
