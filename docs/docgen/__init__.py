"""docgen: the API reference of rules_shiko, docs/rules.md and docs/repositories.md, from its .bzl files.

Standard library only; `python3 docs/generate.py [--check]` is the entry point (see cli.py).

Stardoc cannot be fetched where this project builds, and Starlark's syntax is a subset of
Python's, so `ast` reads the .bzl files and a small evaluator interprets what documentation
needs from their top level: `load()` statements (labels `//pkg:file.bzl`, `:file.bzl`,
`//pkg:sub/file.bzl`; other repositories are not followed), `x = _x` aliases, string, list and
dict constants, `dict(a, **b)`, `dict(a, k = v)`, `a + b`, `a | b`, `D.update(E)`, `attr.*(...)`,
and the calls that define documented symbols: `rule`, `repository_rule`, `provider`,
`tag_class`, `module_extension` (and `aspect`). A `def` is a macro or a function: its Google-style
docstring gives its arguments; when it forwards `**kwargs` to a rule (or to another macro), the
attributes that can arrive that way are listed too.

The public symbols are the top-level names not starting with "_" of the entry points:
rules/defs.bzl (-> docs/rules.md), rules/repositories.bzl and rules/extensions.bzl
(-> docs/repositories.md). The output depends only on the sources (their order of
declaration), so it is deterministic.

Modules, in the order data flows through them:
    values.py    what the evaluator produces (Opaque, Attr, Symbol, Function, Module) as Starlark source
    evaluate.py  a .bzl file's top level: constants, dict merges, attr.* and rule()/provider()/... calls
    loader.py    files and load() labels: each .bzl file read and evaluated once, symbols across files
    extract.py   what a symbol is (rule, macro, ...): docstrings, what a macro forwards via **kwargs
    markdown.py  markdown primitives (escaping, code spans, tables) and attribute/argument rows
    render.py    one section per public symbol, one page per output file
    cli.py       writing the files, or --check: a unified diff when the committed ones are stale
"""

from .cli import check, default_root, main
from .extract import kind_of, parse_docstring
from .loader import Loader, resolve_label
from .render import HEADER, OUTPUTS, generate
from .values import GenerateError

__all__ = [
    "GenerateError",
    "HEADER",
    "Loader",
    "OUTPUTS",
    "check",
    "default_root",
    "generate",
    "kind_of",
    "main",
    "parse_docstring",
    "resolve_label",
]
