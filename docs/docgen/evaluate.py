"""The top level of one .bzl file, evaluated: constants, dict merges, `attr.*` and symbol calls.

What is followed: `x = _x` aliases, string, list and dict constants, `dict(a, **b)`,
`dict(a, k = v)`, `{**a}`, `a + b`, `a | b`, `a += b`, `"..." % x`, `D.update(E)`, `-1`,
`attr.<kind>(...)` (an Attr) and `rule`, `repository_rule`, `provider`, `tag_class`,
`module_extension`, `aspect` calls (a Symbol). A `def` is bound as a Function, unevaluated.
Anything else is an Opaque holding its source, so the docs show it as written.
"""

import ast

from .values import Attr, Function, GenerateError, Module, Opaque, Symbol

SYMBOL_KINDS = ("rule", "repository_rule", "provider", "tag_class", "module_extension", "aspect")


def evaluate_module(loader, path, package, text):
    """The Module of a .bzl file's source `text`.

    Its `load()` statements are handed, in order, to `loader.load_statement(module, call)`,
    which binds the loaded names in `module.env` (see loader.Loader).
    """
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise GenerateError("%s:%s: cannot parse: %s" % (path, e.lineno, e.msg))
    module = Module(path, package)
    # Not cleandoc'ed: a module docstring starts in column 0, and its indented lines are code blocks.
    doc = ast.get_docstring(tree, clean=False) or ""
    module.doc = "\n".join(line.rstrip() for line in doc.strip("\n").split("\n"))
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            if isinstance(call.func, ast.Name) and call.func.id == "load":
                loader.load_statement(module, call)
            elif (isinstance(call.func, ast.Attribute) and call.func.attr == "update"
                    and isinstance(call.func.value, ast.Name)):
                target = module.env.get(call.func.value.id)
                if isinstance(target, dict):
                    for a in call.args:
                        value = evaluate(a, module)
                        if isinstance(value, dict):
                            target.update(value)
                    target.update(_keywords(call, module))
        elif isinstance(stmt, ast.Assign):
            value = evaluate(stmt.value, module)
            for t in stmt.targets:
                if isinstance(t, ast.Name):
                    _bind(module, t.id, value)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            old = module.env.get(stmt.target.id)
            _bind(module, stmt.target.id, _binop(stmt.op, old, evaluate(stmt.value, module), stmt))
        elif isinstance(stmt, ast.FunctionDef):
            _bind(module, stmt.name, Function(stmt, module))
    return module


def _bind(module, name, value):
    if isinstance(value, Symbol) and value.name is None:
        value.name = name
    module.env[name] = value
    if not name.startswith("_") and name not in module.public:
        module.public.append(name)


def _keywords(call, module):
    out = {}
    for k in call.keywords:
        value = evaluate(k.value, module)
        if k.arg is None:
            if isinstance(value, dict):
                out.update(value)
        else:
            out[k.arg] = value
    return out


def _binop(op, left, right, node):
    if isinstance(op, ast.Add) and type(left) is type(right) and isinstance(left, (str, list)):
        return left + right
    if isinstance(op, (ast.BitOr, ast.Add)) and isinstance(left, dict) and isinstance(right, dict):
        merged = dict(left)
        merged.update(right)
        return merged
    if isinstance(op, ast.Mod) and isinstance(left, str) and not isinstance(right, Opaque):
        try:
            return left % (tuple(right) if isinstance(right, list) else right)
        except (TypeError, ValueError):
            pass
    return Opaque(ast.unparse(node))


def evaluate(node, module):
    """The value of a top-level expression (Opaque where this evaluator does not follow)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in module.env:
            return module.env[node.id]
        return Opaque(node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [evaluate(e, module) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            value = evaluate(v, module)
            if k is None:  # {**d}
                if isinstance(value, dict):
                    out.update(value)
                continue
            key = evaluate(k, module)
            out[key.text if isinstance(key, Opaque) else key] = value
        return out
    if isinstance(node, ast.BinOp):
        return _binop(node.op, evaluate(node.left, module), evaluate(node.right, module), node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = evaluate(node.operand, module)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "attr":
            return Attr(func.attr, _keywords(node, module))
        if isinstance(func, ast.Name) and func.id == "dict":
            out = {}
            for a in node.args:
                value = evaluate(a, module)
                if isinstance(value, dict):
                    out.update(value)
            out.update(_keywords(node, module))
            return out
        if isinstance(func, ast.Name) and func.id in SYMBOL_KINDS:
            kwargs = _keywords(node, module)
            if node.args:  # provider("doc", ...), rule(implementation, ...)
                first = "doc" if func.id == "provider" else "implementation"
                kwargs.setdefault(first, evaluate(node.args[0], module))
            for k in ("attrs", "fields", "tag_classes"):
                if isinstance(kwargs.get(k), dict):
                    kwargs[k] = dict(kwargs[k])  # rule() copies its attrs: later updates don't count
            return Symbol(func.id, kwargs, module)
    return Opaque(ast.unparse(node))
