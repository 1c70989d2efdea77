"""The values of docgen's little evaluator, and how each is written back as Starlark source.

A .bzl file's top-level expression evaluates to a Python str, int, float, bool, None, list or
dict, or to one of the classes here: `Attr` (an `attr.*(...)` call), `Symbol` (a `rule(...)`,
`provider(...)`, ... call), `Function` (a `def`), or `Opaque` (anything else, kept as source).
"""

import ast


class GenerateError(Exception):
    """A source this generator cannot read (missing file, syntax error, bad load label)."""


class Opaque:
    """An expression the evaluator does not interpret: kept as its source text."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "Opaque(%s)" % self.text


class Attr:
    """`attr.<kind>(**kwargs)`."""

    def __init__(self, kind, kwargs):
        self.kind = kind
        self.kwargs = kwargs


class Symbol:
    """The result of `rule(...)`, `provider(...)`, ...: kind, arguments, where it was defined."""

    def __init__(self, kind, kwargs, module):
        self.kind = kind
        self.kwargs = kwargs
        self.module = module
        self.name = None  # the first name it is bound to, in the module that defines it

    def attrs(self):
        attrs = self.kwargs.get("attrs")
        return attrs if isinstance(attrs, dict) else {}


class Function:
    """A `def`: a macro or a plain function."""

    def __init__(self, node, module):
        self.node = node
        self.module = module
        self.name = node.name

    def params(self):
        """[(name, default source or None)] of the named parameters, in order."""
        a = self.node.args
        names = a.posonlyargs + a.args
        defaults = [None] * (len(names) - len(a.defaults)) + list(a.defaults)
        out = list(zip([n.arg for n in names], defaults))
        out += [(n.arg, d) for n, d in zip(a.kwonlyargs, a.kw_defaults)]
        return out

    def kwargs_name(self):
        return self.node.args.kwarg.arg if self.node.args.kwarg else None

    def signature(self):
        a = self.node.args
        parts = []
        for name, default in self.params():
            parts.append(name if default is None else "%s = %s" % (name, source_literal(default)))
        if a.vararg:
            parts.insert(len(a.posonlyargs + a.args), "*" + a.vararg.arg)
        if a.kwarg:
            parts.append("**" + a.kwarg.arg)
        return call_signature(self.name, parts)


class Module:
    """One evaluated .bzl file."""

    def __init__(self, path, package):
        self.path = path  # relative to the repository root, e.g. rules/private/layer/layer.bzl
        self.package = package  # its Bazel package, for `:file.bzl` labels
        self.env = {}
        self.public = []  # top-level names not starting with "_", in order of definition
        self.doc = ""


# --- As Starlark source ---------------------------------------------------------------------------


def starlark(value):
    """A value as Starlark source."""
    if isinstance(value, Opaque):
        return value.text
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[%s]" % ", ".join(starlark(v) for v in value)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s: %s" % (starlark(k), starlark(v)) for k, v in value.items())
    if isinstance(value, (Symbol, Function)):
        return value.name or "?"
    if isinstance(value, Attr):
        return "attr.%s(...)" % value.kind
    return repr(value)


def source_literal(node):
    """A parameter default as Starlark source (literals normalized, other expressions as written)."""
    try:
        return starlark(ast.literal_eval(node))
    except (ValueError, TypeError, SyntaxError):
        return ast.unparse(node)


def call_signature(name, parts):
    one_line = "%s(%s)" % (name, ", ".join(parts))
    if len(one_line) <= 100 or not parts:
        return one_line
    return "%s(\n%s\n)" % (name, "\n".join("    %s," % p for p in parts))
