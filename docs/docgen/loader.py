"""Reading .bzl files: each once, their `load()` labels resolved, symbols bound across files."""

import ast
import os

from .evaluate import evaluate_module
from .values import GenerateError, Opaque

# Repository names under which a load label means this repository.
MAIN_REPOS = ("", "rules_shiko")


class Loader:
    """Reads and evaluates .bzl files under `root`, each once."""

    def __init__(self, root):
        self.root = root
        self.modules = {}
        self.loading = []

    def module(self, path, package, loaded_by=None):
        """The Module of `path` (relative to the root) in Bazel package `package`, evaluated once."""
        if path in self.modules:
            return self.modules[path]
        if path in self.loading:
            raise GenerateError("load cycle: %s" % " -> ".join(self.loading + [path]))
        full = os.path.join(self.root, path)
        try:
            with open(full, "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise GenerateError(
                "cannot read %s%s: %s (under Bazel: is it in a bzl_library that //rules:defs, "
                ":repositories or :extensions depends on?)"
                % (path, " (loaded by %s)" % loaded_by if loaded_by else "", e.strerror or e))
        self.loading.append(path)
        try:
            module = evaluate_module(self, path, package, text)
        finally:
            self.loading.pop()
        self.modules[path] = module
        return module

    def load_statement(self, module, call):
        """Binds in `module.env` the names that a `load(label, ...)` call of it loads.

        Names loaded from another repository are bound as Opaque; a file of this repository is
        read (once) and each name must be one of its top-level symbols.
        """
        if not call.args or not isinstance(call.args[0], ast.Constant):
            raise GenerateError("%s:%d: load() needs a label string" % (module.path, call.lineno))
        label = call.args[0].value
        names = [(a.value, a.value) for a in call.args[1:] if isinstance(a, ast.Constant)]
        names += [(k.arg, k.value.value) for k in call.keywords if isinstance(k.value, ast.Constant)]
        where = resolve_label(label, module.package)
        if where is None:
            for local, _ in names:
                module.env[local] = Opaque("%s from %s" % (local, label))
            return
        loaded = self.module(where[1], where[0], loaded_by=module.path)
        for local, remote in names:
            if remote not in loaded.env:
                raise GenerateError("%s:%d: %s has no symbol %r" % (
                    module.path, call.lineno, loaded.path, remote))
            module.env[local] = loaded.env[remote]


def resolve_label(label, package):
    """(package, path) of a load label of this repository, or None for another repository."""
    if label.startswith("@"):
        repo, sep, rest = label.lstrip("@").partition("//")
        if not sep or repo not in MAIN_REPOS:
            return None
        label = "//" + rest
    if label.startswith("//"):
        pkg, sep, name = label[2:].partition(":")
        if not sep:
            raise GenerateError("load label %r names no file" % label)
    else:
        pkg, name = package, label[1:] if label.startswith(":") else label
    path = "%s/%s" % (pkg, name) if pkg else name
    return pkg, path
