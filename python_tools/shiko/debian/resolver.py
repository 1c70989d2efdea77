"""Resolves requested Debian packages with their Pre-Depends and Depends, for one architecture.

    universe = Universe()
    universe.add(stanzas, suite)          # for each suite, in preference order
    universe.finish()
    resolution = resolve(universe, ["python3.11-minimal", "libfoo=1.2-3"], exclude, arch)

Resolution rules
================
- Candidates of a package are all its versions in all suites (binary-<arch> indexes, which hold
  the `Architecture: all` packages too); the highest version wins (Debian version order), the
  first suite in manifest order when two suites carry the same version.
- Every requested package is selected first; then each selected package's `Pre-Depends` and
  `Depends` are walked breadth-first. A dependency `a (>= 1) | b | v` is satisfied by the first
  of: an already selected package that satisfies any alternative (a real package of that name
  and a satisfying version, or one whose `Provides` names it with a satisfying version, or
  unversioned for an unversioned dependency); then, alternative by alternative, the highest
  satisfying version of a real package, or the single package providing it (several providers:
  an error asking to choose one in `packages`).
- A group naming an `exclude`d package is satisfied without installing anything (for packages
  only maintainer scripts need, e.g. debconf). Packages marked `Essential: yes` are only
  installed when requested: images have no shell, no dpkg, no perl (a dependency that resolves
  to one is recorded in the lock under "assumed" instead).
- `name:any` / `name:native` qualifiers are ignored (one architecture per resolution);
  `Recommends`, `Suggests`, `Conflicts` and `Breaks` are not considered.
- An unsatisfiable dependency is an error naming the chain of packages that needed it and
  what the archive offers instead.
"""

import functools

from python_tools.shiko.debian.deb822 import format_group, parse_relations
from python_tools.shiko.debian.errors import DebError
from python_tools.shiko.debian.version import version_compare, version_satisfies


class Universe:
    """All candidate packages of one architecture, from the suites in preference order."""

    def __init__(self):
        self.by_name = {}      # name -> [stanza], highest version first
        self.providers = {}    # virtual name -> [(provider stanza, version or None)]
        self._seen = set()

    def add(self, stanzas, suite):
        for st in stanzas:
            name, version = st.get("Package"), st.get("Version")
            if not name or not version or "Filename" not in st or "SHA256" not in st:
                continue
            key = (name, version)
            if key in self._seen:
                continue  # the same version from an earlier suite wins
            self._seen.add(key)
            st = dict(st)
            st["_suite"] = suite
            self.by_name.setdefault(name, []).append(st)
            for group in parse_relations(st.get("Provides", "")):
                for pname, op, pver in group:
                    self.providers.setdefault(pname, []).append((st, pver if op == "=" else None))

    def finish(self):
        key = functools.cmp_to_key(lambda a, b: version_compare(b["Version"], a["Version"]))
        for name in self.by_name:
            self.by_name[name].sort(key=key)

    def candidates(self, name, op=None, version=None):
        return [st for st in self.by_name.get(name, []) if version_satisfies(st["Version"], op, version)]


def _provides_match(pversion, op, version):
    if op is None:
        return True
    return pversion is not None and version_satisfies(pversion, op, version)


class Resolution:
    def __init__(self, selected, depends, assumed, reasons):
        self.selected = selected    # name -> stanza
        self.depends = depends      # name -> [names]
        self.assumed = assumed      # sorted names of Essential packages not installed
        self.reasons = reasons


def resolve(universe, requests, exclude=(), arch=""):
    """Selects packages for `requests` ([name or name=version]); returns a Resolution."""
    exclude = set(exclude)
    selected = {}
    parent = {}
    depends = {}
    assumed = set()
    queue = []

    def chain(name):
        out = [name]
        while out[-1] in parent and parent[out[-1]] is not None and len(out) < 50:
            out.append(parent[out[-1]])
        return " <- ".join(out)

    for req in requests:
        name, _, pinned = req.partition("=")
        name = name.strip()
        pinned = pinned.strip() or None
        cands = universe.candidates(name, "=" if pinned else None, pinned)
        if not cands:
            avail = [st["Version"] for st in universe.by_name.get(name, [])]
            if avail:
                raise DebError("%s: requested %s, but the archive has %s only" % (
                    arch, req, ", ".join(avail)))
            provs = sorted({st["Package"] for st, _ in universe.providers.get(name, [])})
            if provs:
                raise DebError("%s: requested package %r is virtual, provided by %s: request "
                               "one of them" % (arch, name, ", ".join(provs)))
            raise DebError("%s: requested package %r is not in the archive" % (arch, name))
        if name in selected:
            if selected[name]["Version"] != cands[0]["Version"]:
                raise DebError("%s: %r is requested twice with different versions" % (arch, name))
            continue
        selected[name] = cands[0]
        parent[name] = None
        queue.append(name)

    def satisfied_by_selected(group):
        for n, op, v in group:
            st = selected.get(n)
            if st is not None and version_satisfies(st["Version"], op, v):
                return True
            for pst, pver in universe.providers.get(n, []):
                if pst["Package"] in selected and selected[pst["Package"]] is pst and \
                        _provides_match(pver, op, v):
                    return True
        return False

    def explain(group):
        parts = []
        for n, op, v in group:
            avail = universe.by_name.get(n, [])
            provs = universe.providers.get(n, [])
            if n in selected:
                parts.append("%s: %s is already selected (needed by %s)" % (
                    n, selected[n]["Version"], chain(n)))
            elif avail:
                parts.append("%s: the archive has %s" % (n, ", ".join(
                    "%s (%s)" % (st["Version"], st["_suite"]) for st in avail)))
            elif provs:
                parts.append("%s: virtual, provided by %s" % (n, ", ".join(
                    "%s%s" % (st["Package"], " = " + pv if pv else "") for st, pv in provs)))
            else:
                parts.append("%s: no such package" % n)
        return "; ".join(parts)

    i = 0
    while i < len(queue):
        name = queue[i]
        i += 1
        st = selected[name]
        deps = []
        for field in ("Pre-Depends", "Depends"):
            try:
                groups = parse_relations(st.get(field, ""))
            except DebError as e:
                raise DebError("%s: %s %s: %s: %s" % (arch, name, st["Version"], field, e))
            for group in groups:
                if any(n in exclude for n, _, _ in group):
                    continue
                if satisfied_by_selected(group):
                    for n, op, v in group:
                        if n in selected and version_satisfies(selected[n]["Version"], op, v):
                            deps.append(n)
                            break
                        hit = [p for p, pv in universe.providers.get(n, [])
                               if p["Package"] in selected and selected[p["Package"]] is p and
                               _provides_match(pv, op, v)]
                        if hit:
                            deps.append(hit[0]["Package"])
                            break
                    continue
                choice = None
                for n, op, v in group:
                    if n in selected:
                        continue  # selected with a version that doesn't satisfy: next alternative
                    cands = universe.candidates(n, op, v)
                    if cands:
                        choice = cands[0]
                        break
                    provs = [p for p, pv in universe.providers.get(n, []) if _provides_match(pv, op, v)]
                    names = sorted({p["Package"] for p in provs})
                    if len(names) == 1:
                        choice = provs[0]
                        break
                    if len(names) > 1:
                        raise DebError(
                            "%s: %s %s depends on %r, a virtual package provided by %s: add the "
                            "one you want to `packages` (or to `exclude`)" % (
                                arch, name, st["Version"], format_group(group), ", ".join(names)))
                if choice is None:
                    raise DebError("%s: unsatisfiable dependency: %s %s (needed by %s) %s %r: %s" % (
                        arch, name, st["Version"], chain(name) if parent.get(name) else "the manifest",
                        field, format_group(group), explain(group)))
                cname = choice["Package"]
                if choice.get("Essential", "").lower() == "yes":
                    assumed.add(cname)
                    continue
                if cname in selected:
                    # A provider version different from the selected one.
                    raise DebError("%s: %s %s needs %r, satisfied only by %s %s, but %s %s is "
                                   "selected (needed by %s)" % (
                                       arch, name, st["Version"], format_group(group), cname,
                                       choice["Version"], cname, selected[cname]["Version"],
                                       chain(cname)))
                selected[cname] = choice
                parent[cname] = name
                queue.append(cname)
                deps.append(cname)
        depends[name] = sorted(set(deps) - {name})
    return Resolution(selected, depends, sorted(assumed - set(selected)), parent)
