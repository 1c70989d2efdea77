"""Unit tests of docs/generate.py (the package docs/docgen) on small synthetic .bzl trees (unittest).

    python3 -m unittest docs/generate_test.py        (or: bazel test //docs:generate_test)
"""

import io
import os
import sys
import tempfile
import textwrap
import unittest

# docs/ holds the package docgen and the entry point generate.py (under Bazel, //docs:docgen's
# `imports` puts it on sys.path too).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import docgen  # noqa: E402
import generate  # noqa: E402  (the entry point: docs/ is not a package)

DEFS = '''
"""Public API of a test ruleset, for <name> targets.

    load("@rules_shiko//rules:defs.bzl", "thing")  # <kept> in a code block
"""

load("//rules/private/thing:thing.bzl", _thing = "thing", _thing_rule = "thing_rule")
load("//rules/private:providers.bzl", _ThingInfo = "ThingInfo")
load("@other_repo//x:y.bzl", "ignored")

thing = _thing
thing_rule = _thing_rule
ThingInfo = _ThingInfo
_hidden = _thing
'''

PROVIDERS = '''
ThingInfo = provider(
    doc = "What a thing gives.",
    fields = {
        "path": "File: the output.",
        "size": "int: its size | in bytes.",
    },
)
'''

COMMON = '''
SHARED_ATTRS = {
    "mode": attr.string(default = "0644", doc = "File mode."),
    "_tool": attr.label(default = "//tools:x", doc = "Private: never documented."),
}

MORE = {"level": attr.int(default = -1, values = [-1, 0, 1], doc = "Level.")}

SHARED_ATTRS.update(MORE)

_SUFFIX = " (see " + "README)"
KINDS = ["a", "b"] + ["c"]
'''

THING = '''
"""thing: does things."""

load(":common.bzl", "KINDS", "SHARED_ATTRS", _suffix = "_SUFFIX")
load("//rules/private:providers.bzl", "ThingInfo")

_BASE = dict(SHARED_ATTRS, **{
    "srcs": attr.label_list(allow_files = True, doc = "Inputs" + _suffix),
})

thing_rule = rule(
    implementation = _impl,
    doc = """A thing.

Second paragraph.""",
    attrs = dict(_BASE, kind = attr.string(default = "a", values = KINDS, doc = "Kind."),
                 out = attr.output(mandatory = True, doc = "The output.")),
    executable = True,
)

def thing(name, src = None, **kwargs):
    """Makes a thing.

    Longer text.

    Args:
      name: target name.
      src: one source; becomes
        `srcs`.
      **kwargs: other attributes of thing_rule.

    Returns:
      Nothing useful.
    """
    thing_rule(name = name, srcs = [src] if src else [], **kwargs)
'''

REPOSITORIES = '''
"""Repository rules."""

load("//rules/private/repo:fetch.bzl", _fetch = "fetch", _fetch_rule = "fetch_rule")

fetch = _fetch
fetch_rule = _fetch_rule

def setup():
    """Declares everything."""
    fetch(name = "x", url = "u")
'''

FETCH = '''
FETCH_ATTRS = {
    "url": attr.string(mandatory = True, doc = "Where from."),
    "sha256": attr.string(doc = "Checksum: <hex>, as in `sha256:<hex>`."),
}

fetch_rule = repository_rule(
    implementation = _impl,
    doc = "Fetches a file.",
    attrs = dict(FETCH_ATTRS, apparent_name = attr.string(doc = "Set by the macro.")),
    environ = ["HOME"],
)

def fetch(name, **kwargs):
    """Fetches.

    Args:
      name: repository name.
      **kwargs: url, sha256.
    """
    fetch_rule(name = name, apparent_name = name, **kwargs)

def wrap(name, flavor = "plain", **kwargs):
    """A macro around a macro.

    Args:
      name: repository name.
      flavor: a flavor.
    """
    fetch(name = name, sha256 = "0" * 64, **kwargs)
'''

EXTENSIONS = '''
"""Module extensions."""

load("//rules/private/repo:fetch.bzl", "FETCH_ATTRS", "fetch_rule")

_get = tag_class(
    doc = "One file.",
    attrs = dict(FETCH_ATTRS, name = attr.string(mandatory = True, doc = "Repository name.")),
)

files = module_extension(
    implementation = _impl,
    doc = "Files by checksum.",
    tag_classes = {"get": _get},
)
'''


def write_tree(root, files):
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))


TREE = {
    "rules/defs.bzl": DEFS,
    "rules/repositories.bzl": REPOSITORIES,
    "rules/extensions.bzl": EXTENSIONS,
    "rules/private/providers.bzl": PROVIDERS,
    "rules/private/thing/common.bzl": COMMON,
    "rules/private/thing/thing.bzl": THING,
    "rules/private/repo/fetch.bzl": FETCH,
}


class GenerateTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        write_tree(self.root, TREE)
        self.out = docgen.generate(self.root)
        self.rules = self.out["docs/rules.md"]
        self.repos = self.out["docs/repositories.md"]

    def tearDown(self):
        self.tmp.cleanup()

    def section(self, text, heading):
        """The text of one section, from its heading to the next heading of the same level."""
        level = heading.split(" ")[0]
        start = text.index("\n" + heading + "\n")
        end = text.find("\n%s " % level, start + len(heading) + 2)
        return text[start:] if end == -1 else text[start:end]

    def test_header_and_contents(self):
        self.assertTrue(self.rules.startswith(docgen.HEADER + "\n"))
        self.assertIn("do not edit by hand", docgen.HEADER)
        self.assertIn("python3 docs/generate.py", docgen.HEADER)
        self.assertIn("- [thing](#thing): macro\n", self.rules)
        self.assertIn("- [thing_rule](#thing_rule): executable rule\n", self.rules)
        self.assertIn("- [ThingInfo](#thinginfo): provider\n", self.rules)
        self.assertNotIn("_hidden", self.rules)
        self.assertNotIn("ignored", self.rules)  # loaded from another repository, not re-exported
        # The module docstring: tags escaped, except in code blocks.
        self.assertIn("Public API of a test ruleset, for &lt;name> targets.\n\n"
                      '    load("@rules_shiko//rules:defs.bzl", "thing")  # <kept> in a code block\n', self.rules)

    def test_rule_with_merged_attribute_dicts(self):
        s = self.section(self.rules, "## thing_rule")
        self.assertIn('*Executable rule*: `load("@rules_shiko//rules:defs.bzl", "thing_rule")`', s)
        self.assertIn("thing_rule(name, mode, level, srcs, kind, out)", s)
        self.assertIn("A thing.\n\nSecond paragraph.", s)
        self.assertIn("| Name | Type | Default | Mandatory | Description |\n|---|---|---|---|---|\n", s)
        self.assertIn("| `name` | name |  | yes | A unique name for this target. |", s)
        self.assertIn('| `mode` | string | `"0644"` | no | File mode. |', s)
        # SHARED_ATTRS.update(MORE) in another file, then a negative default and `values`.
        self.assertIn("| `level` | int | `-1` | no | Level. One of: `-1`, `0`, `1`. |", s)
        # dict(a, **{...}), a doc built with + from a constant loaded under another name.
        self.assertIn("| `srcs` | label_list | `[]` | no | Inputs (see README) |", s)
        # dict(a, k = v) and a list constant built with + as `values`.
        self.assertIn('| `kind` | string | `"a"` | no | Kind. One of: `"a"`, `"b"`, `"c"`. |', s)
        self.assertIn("| `out` | output |  | yes | The output. |", s)
        self.assertNotIn("_tool", s)
        rows = [line for line in s.split("\n") if line.startswith("| `")]
        self.assertEqual([r.split("`")[1] for r in rows], ["name", "mode", "level", "srcs", "kind", "out"])

    def test_macro_arguments_and_forwarded_attributes(self):
        s = self.section(self.rules, "## thing")
        self.assertIn('*Macro*: `load("@rules_shiko//rules:defs.bzl", "thing")`', s)
        self.assertIn("thing(name, src = None, **kwargs)", s)
        self.assertIn("Makes a thing.\n\nLonger text.", s)
        self.assertNotIn("Args:", s)
        self.assertIn("| `name` |  | yes | target name. |", s)
        self.assertIn("| `src` | `None` | no | one source; becomes `srcs`. |", s)
        self.assertIn("| `**kwargs` |  | no | other attributes of thing_rule. |", s)
        self.assertIn("**Returns:** Nothing useful.", s)
        self.assertIn("**Attributes of the rule `thing_rule`**, through `**kwargs`:", s)
        fwd = s[s.index("**Attributes of the rule"):]
        names = [line.split("`")[1] for line in fwd.split("\n") if line.startswith("| `")]
        # name and srcs are passed explicitly, _tool is private.
        self.assertEqual(names, ["mode", "level", "kind", "out"])

    def test_provider(self):
        s = self.section(self.rules, "## ThingInfo")
        self.assertIn("ThingInfo(path, size)", s)
        self.assertIn("What a thing gives.", s)
        self.assertIn("| `path` | File: the output. |", s)
        self.assertIn("| `size` | int: its size \\| in bytes. |", s)  # pipes escaped in cells

    def test_repository_rules_and_functions(self):
        s = self.section(self.repos, "### fetch")
        self.assertIn("**Attributes of the repository rule `fetch_rule`**, through `**kwargs`:", s)
        self.assertIn("| `url` | string |  | yes | Where from. |", s)
        self.assertIn("| `sha256` | string | `\"\"` | no | Checksum: &lt;hex>, as in `sha256:<hex>`. |", s)
        self.assertNotIn("apparent_name", s)  # passed explicitly by the macro
        s = self.section(self.repos, "### fetch_rule")
        self.assertIn("*Repository rule*", s)
        self.assertIn("| `apparent_name` | string | `\"\"` | no | Set by the macro. |", s)
        self.assertIn("A unique name for this repository.", s)
        self.assertIn("Refetched when these environment variables change: `HOME`.", s)
        s = self.section(self.repos, "### setup")
        self.assertIn("*Macro*", s)  # it calls a macro that calls a repository rule
        self.assertIn("setup()", s)
        self.assertIn("Declares everything.", s)

    def test_module_extension(self):
        self.assertIn("- [MODULE.bazel: module extensions](#modulebazel-module-extensions)", self.repos)
        self.assertIn("  - [files](#files): module extension", self.repos)
        s = self.section(self.repos, "### files")
        self.assertIn('files = use_extension("@rules_shiko//rules:extensions.bzl", "files")', s)
        self.assertIn("Files by checksum.", s)
        self.assertIn("#### files.get", s)
        self.assertIn("files.get(name, url, sha256)", s)  # the tag's own `name` first
        rows = [line.split("`")[1] for line in s.split("\n") if line.startswith("| `")]
        self.assertEqual(rows, ["name", "url", "sha256"])

    def test_macro_through_a_macro(self):
        with open(os.path.join(self.root, "rules/repositories.bzl"), "a", encoding="utf-8") as f:
            f.write('\nload("//rules/private/repo:fetch.bzl", _wrap = "wrap")\n\nwrap = _wrap\n')
        s = self.section(docgen.generate(self.root)["docs/repositories.md"], "### wrap")
        self.assertIn("**Attributes of the repository rule `fetch_rule`** (via `fetch`), through `**kwargs`:",
                      s)
        fwd = s[s.index("(via `fetch`)"):]
        names = [line.split("`")[1] for line in fwd.split("\n") if line.startswith("| `")]
        self.assertEqual(names, ["url"])  # sha256 is passed by wrap, apparent_name by fetch
        self.assertNotIn("Arguments of the macro `fetch`", s)  # fetch has no argument left but name

    def test_load_labels(self):
        self.assertEqual(docgen.resolve_label("//rules/private/layer:layer.bzl", "rules"),
                         ("rules/private/layer", "rules/private/layer/layer.bzl"))
        self.assertEqual(docgen.resolve_label(":layer.bzl", "rules/private/layer"),
                         ("rules/private/layer", "rules/private/layer/layer.bzl"))
        self.assertEqual(docgen.resolve_label("//rules/private:layer/layer.bzl", "rules"),
                         ("rules/private", "rules/private/layer/layer.bzl"))
        # A file loaded as //rules/private:layer/layer.bzl is in package rules/private.
        self.assertEqual(docgen.resolve_label(":paths.bzl", "rules/private"),
                         ("rules/private", "rules/private/paths.bzl"))
        self.assertEqual(docgen.resolve_label("@rules_shiko//rules:defs.bzl", "x"),
                         ("rules", "rules/defs.bzl"))
        self.assertEqual(docgen.resolve_label("@//rules:defs.bzl", "x"), ("rules", "rules/defs.bzl"))
        self.assertIsNone(docgen.resolve_label("@rules_python//python:defs.bzl", "rules"))

    def test_missing_file_and_symbol(self):
        os.remove(os.path.join(self.root, "rules/private/thing/common.bzl"))
        with self.assertRaises(docgen.GenerateError) as e:
            docgen.generate(self.root)
        self.assertIn("cannot read rules/private/thing/common.bzl (loaded by rules/private/thing/thing.bzl)",
                      str(e.exception))
        write_tree(self.root, {"rules/private/thing/common.bzl": "OTHER = 1\n"})
        with self.assertRaises(docgen.GenerateError) as e:
            docgen.generate(self.root)
        self.assertIn("rules/private/thing/common.bzl has no symbol 'KINDS'", str(e.exception))

    def test_deterministic(self):
        self.assertEqual(docgen.generate(self.root), self.out)

    def test_check_and_write(self):
        os.mkdir(os.path.join(self.root, "docs"))
        out = io.StringIO()
        self.assertEqual(docgen.check(self.root, self.out, out), 2)  # nothing written yet
        sys_stdout = sys.stdout
        sys.stdout = io.StringIO()
        try:
            self.assertEqual(generate.main(["--root", self.root]), 0)
            self.assertEqual(generate.main(["--root", self.root, "--check"]), 0)
        finally:
            sys.stdout = sys_stdout
        with open(os.path.join(self.root, "docs/rules.md"), encoding="utf-8") as f:
            self.assertEqual(f.read(), self.rules)
        with open(os.path.join(self.root, "docs/rules.md"), "a", encoding="utf-8") as f:
            f.write("hand edit\n")
        out = io.StringIO()
        self.assertEqual(docgen.check(self.root, self.out, out), 1)
        text = out.getvalue()
        self.assertIn("--- docs/rules.md (committed)\n+++ docs/rules.md (generated)\n", text)
        self.assertIn("-hand edit\n", text)
        self.assertIn("ERROR: 1 generated doc file(s) are out of date: run `python3 docs/generate.py`", text)

    def test_default_root(self):
        # The repository root holding docs/generate.py: $TEST_SRCDIR/$TEST_WORKSPACE under Bazel,
        # else found from the package's own location (docs/docgen/cli.py), both here.
        for env in ({}, {"TEST_SRCDIR": None, "TEST_WORKSPACE": None}):
            saved = {k: os.environ.get(k) for k in env}
            try:
                for k in env:
                    os.environ.pop(k, None)
                root = docgen.default_root()
            finally:
                for k, v in saved.items():
                    if v is not None:
                        os.environ[k] = v
            self.assertTrue(os.path.isfile(os.path.join(root, "docs", "generate.py")), root)

    def test_error_is_one_line(self):
        write_tree(self.root, {"rules/private/thing/common.bzl": "OTHER = (\n"})
        err = io.StringIO()
        sys_stderr, sys.stderr = sys.stderr, err
        try:
            self.assertEqual(generate.main(["--root", self.root, "--check"]), 1)
        finally:
            sys.stderr = sys_stderr
        self.assertRegex(err.getvalue(), r"\AERROR: docs/generate.py: rules/private/thing/common.bzl:\d+: "
                                         r"cannot parse: [^\n]*\n\Z")

    def test_docstring_parsing(self):
        description, args, returns = docgen.parse_docstring('''Summary.

            Body with `code`.

            Args:
              a: first
                continued.
              *args: rest.
              b (int): typed.
            Returns:
              A value.
            ''')
        self.assertEqual(description, "Summary.\n\nBody with `code`.")
        self.assertEqual(args, [("a", "first continued."), ("*args", "rest."), ("b", "typed.")])
        self.assertEqual(returns, "A value.")


if __name__ == "__main__":
    unittest.main()
