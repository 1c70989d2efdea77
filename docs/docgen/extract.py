"""What an evaluated public symbol documents: its kind, its docstring, what a macro forwards.

A Symbol is a rule, repository rule, provider, tag class, module extension or aspect by the call
that made it. A Function is a macro when it calls a rule or repository rule (directly or through
other defs) or forwards its **kwargs to one, else a plain function; its Google-style docstring
gives its description, arguments and return value.
"""

import ast
import inspect
import re

from .markdown import ARG_HEADER, ATTR_HEADER, argument_rows, attribute_rows, code, table
from .values import Function, Symbol

# --- Docstrings -----------------------------------------------------------------------------------

_SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Yields):\s*$")
_ARG = re.compile(r"^(\*{0,2}[A-Za-z_]\w*)(?:\s*\([^)]*\))?:\s*(.*)$")


def parse_docstring(doc):
    """(description, [(arg name, text)], returns text) of a Google-style docstring."""
    lines = inspect.cleandoc(doc or "").split("\n")
    description = []
    args = []
    returns = []
    section = None
    arg_indent = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            arg_indent = None
            continue
        if section is None:
            description.append(line)
            continue
        if line.strip() and not line.startswith(" "):
            section = None  # back to unindented text: more description
            description.append(line)
            continue
        if section in ("Args", "Arguments"):
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            m = _ARG.match(line.strip())
            if m and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                args.append([m.group(1), m.group(2).strip()])
            elif args:
                args[-1][1] = (args[-1][1] + " " + line.strip()).strip()
        elif section in ("Returns", "Yields"):
            returns.append(line.strip())
    text = "\n".join(description).strip()
    return text, [(n, t) for n, t in args], " ".join(r for r in returns if r).strip()


def function_docs(func):
    """parse_docstring() of a def's docstring."""
    return parse_docstring(ast.get_docstring(func.node) or "")


# --- Kinds ----------------------------------------------------------------------------------------


def kind_of(value):
    """What a public symbol is, in words: "Rule", "Macro", "Provider", ..."""
    if isinstance(value, Function):
        return "Macro" if forwarded(value) or _calls_symbol(value) else "Function"
    if isinstance(value, Symbol):
        if value.kind == "rule":
            if value.kwargs.get("test") is True:
                return "Test rule"
            if value.kwargs.get("executable") is True:
                return "Executable rule"
            return "Rule"
        return {
            "repository_rule": "Repository rule",
            "provider": "Provider",
            "module_extension": "Module extension",
            "tag_class": "Tag class",
            "aspect": "Aspect",
        }[value.kind]
    return "Constant"


def symbol_params(symbol, implicit_name=True):
    """The public attribute names of a rule (with its implicit `name`) or tag class, `name` first."""
    names = [n for n in symbol.attrs() if isinstance(n, str) and not n.startswith("_")]
    if implicit_name or "name" in names:
        names = ["name"] + [n for n in names if n != "name"]
    return names


def _calls_symbol(func):
    """Whether a def calls a rule or macro (directly): a macro, even without **kwargs."""
    for node in ast.walk(func.node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            value = func.module.env.get(node.func.id)
            if isinstance(value, Symbol) and value.kind in ("rule", "repository_rule"):
                return True
            if isinstance(value, Function) and value.node is not func.node and _calls_symbol(value):
                return True
    return False


# --- What a macro forwards through **kwargs ---------------------------------------------------


class Forward:
    """What a macro accepts through **kwargs: a rule's attributes, or another macro's arguments."""

    def __init__(self, kind, rows, target, via):
        self.kind = kind  # "rule", "repository_rule" or "macro"
        self.rows = rows
        self.targets = [target]  # the rule(s) or macro called (rules with the same rows merged)
        self.via = via  # the macros in between

    def render(self):
        names = " or ".join(code(t) for t in self.targets)
        via = "".join(" (via %s)" % code(v) for v in self.via)
        if self.kind == "macro":
            head = "**Arguments of the macro %s**%s, through %s:" % (names, via, code("**kwargs"))
            return [head, ""] + table(ARG_HEADER, self.rows) + [""]
        what = "repository rule" if self.kind == "repository_rule" else "rule"
        head = "**Attributes of the %s %s**%s, through %s:" % (what, names, via, code("**kwargs"))
        return [head, ""] + table(ATTR_HEADER, self.rows) + [""]


def _local_assignments(func):
    out = {}
    for node in ast.walk(func.node):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, []).append(node.value)
    return out


def _callees(node, func, local, depth=0):
    """The module-level values a call's function expression may be (both arms of `a if c else b`)."""
    if depth > 8:
        return []
    if isinstance(node, ast.IfExp):
        return _callees(node.body, func, local, depth + 1) + _callees(node.orelse, func, local, depth + 1)
    if isinstance(node, ast.Name):
        if node.id in local:
            out = []
            for expr in local[node.id]:
                out += _callees(expr, func, local, depth + 1)
            return out
        value = func.module.env.get(node.id)
        if isinstance(value, (Symbol, Function)):
            return [value]
    return []


def forwarded(func, excluded=frozenset(), via=(), seen=frozenset()):
    """[Forward] of the rules and macros that `func` passes its **kwargs to, recursively.

    A name can't arrive through **kwargs when it is a named parameter of a macro on the way, or
    when one of the calls passes it explicitly: those are left out.
    """
    kw = func.kwargs_name()
    if not kw or func.node in seen:
        return []
    seen = seen | {func.node}
    local = _local_assignments(func)
    out = []
    for node in ast.walk(func.node):
        if not isinstance(node, ast.Call):
            continue
        if not any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kw
                   for k in node.keywords):
            continue
        skip = set(excluded) | {k.arg for k in node.keywords if k.arg} | {n for n, _ in func.params()}
        skip.add("name")
        found = []
        for callee in _callees(node.func, func, local):
            if isinstance(callee, Symbol) and callee.kind in ("rule", "repository_rule"):
                _add(found, Forward(callee.kind, attribute_rows(callee.attrs(), skip=skip), callee.name, via))
            elif isinstance(callee, Function):
                docs = dict(function_docs(callee)[1])
                _add(found, Forward("macro", argument_rows(callee, docs, skip=skip), callee.name, via))
                found += forwarded(callee, frozenset(skip), tuple(via) + (callee.name,), seen)
        out += [f for f in found if f.rows]
    return out


def _add(found, forward):
    """Appends a Forward, or names its target in an equal one already found."""
    for f in found:
        if f.kind == forward.kind and f.rows == forward.rows and f.via == forward.via:
            if forward.targets[0] not in f.targets:
                f.targets.append(forward.targets[0])
            return
    found.append(forward)
