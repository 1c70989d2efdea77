"""Wasted bytes and efficiency, exactly as dive (github.com/wagoodman/dive) computes them.

dive's `filetree.Efficiency` (dive/filetree/efficiency.go) over the layers' file trees, bottom
first:

- Each layer is a tree of its tar members (parents created for members whose directories are
  not members; a name written twice keeps its last member). Only the tree's *leaves* count: a
  directory with members below it in the same layer does not, an empty directory counts 0.
- A leaf's size is its tar header size (regular files; 0 for directories, symlinks and
  hardlinks). A whiteout `.wh.NAME` counts at the path NAME, with the size of what it deletes
  *if that is a directory* in the layers below (the sum of the tar sizes below it); a deleted
  file counts 0 there (its bytes already counted in the layer that holds it). Opaque markers
  (`.wh..wh..opq`) are not in dive's trees at all.
- For every path: cumulative = the sum of its sizes over the layers that hold it, minimum =
  the smallest of them. efficiency = sum(minimum) / sum(cumulative) (1.0 when nothing counts);
  wasted bytes = the sum of `cumulative` over the paths held by two layers or more.

dive prints the score as a float64; Python's float is the same IEEE double and the division is
the same, so the two agree to the last bit.
"""

WHITEOUT = ".wh."
OPAQUE_PREFIX = ".wh..wh."


class _Node(object):
    __slots__ = ("children", "entry")

    def __init__(self):
        self.children = {}
        self.entry = None  # None: created as a parent only (dive's empty FileInfo)


def _parts(path):
    return [p for p in path.strip("/").split("/") if p and p != "."]


def layer_tree(entries):
    """The file tree of one layer's listing entries (dicts with path, type, size), as dive
    builds it from the tar."""
    root = _Node()
    for e in entries:
        node = root
        names = _parts(e["path"])
        if not names:
            continue
        for name in names:
            child = node.children.get(name)
            if child is None:
                if name.startswith(OPAQUE_PREFIX):
                    node = None
                    break
                child = node.children[name] = _Node()
            node = child
        if node is not None:
            node.entry = e
    return root


def _leaves(node, prefix=""):
    """(path, node) of every leaf below `node`, depth first."""
    for name in sorted(node.children):
        child = node.children[name]
        path = prefix + "/" + name
        if child.children:
            for item in _leaves(child, path):
                yield item
        else:
            yield path, child


def _size(entry):
    return int(entry.get("size") or 0) if entry is not None else 0


def _stack(lower, upper):
    """Applies layer tree `upper` onto the stacked tree `lower` (in place), as dive's Stack:
    whiteouts remove the path, everything else is added (a directory keeps its children)."""
    for path, leaf in _all_nodes(upper):
        names = _parts(path)
        if names[-1].startswith(WHITEOUT):
            names[-1] = names[-1][len(WHITEOUT):]
            parent = _find(lower, names[:-1])
            if parent is not None:
                parent.children.pop(names[-1], None)
            continue
        node = lower
        for name in names:
            node = node.children.setdefault(name, _Node())
        node.entry = leaf.entry  # as dive: even a parent-only node's empty payload


def _all_nodes(node, prefix=""):
    """Every node below `node`, children first (dive's VisitDepthChildFirst)."""
    for name in sorted(node.children):
        child = node.children[name]
        path = prefix + "/" + name
        for item in _all_nodes(child, path):
            yield item
        yield path, child


def _find(root, names):
    node = root
    for name in names:
        node = node.children.get(name)
        if node is None:
            return None
    return node


def _subtree_size(node):
    return _size(node.entry) + sum(_subtree_size(c) for c in node.children.values())


def path_sizes(layers):
    """{path: [(layer index, size), ...]} of the counted leaves of `layers` (lists of listing
    entries, bottom first), whiteouts under the path they delete."""
    trees = [layer_tree(entries) for entries in layers]
    stacked = _Node()
    seen = {}
    for i, tree in enumerate(trees):
        # dive stacks layers 0..i-1 onto a copy of layer 0; for layer 0 that is layer 0 itself.
        lower = stacked if i else tree
        for path, leaf in _leaves(tree):
            name = path.rsplit("/", 1)[1]
            if name.startswith(WHITEOUT):
                path = path[: len(path) - len(name)] + name[len(WHITEOUT):]
                below = _find(lower, _parts(path))
                if below is None:
                    # dive's visitor fails on a whiteout of a path that is not below: the rest
                    # of this layer's leaves (in its visiting order) are not counted.
                    break
                size = 0
                if below.entry is not None and below.entry.get("type") == "dir":
                    size = _subtree_size(below)
            else:
                size = _size(leaf.entry)
            seen.setdefault(path, []).append((i, size))
        _stack(stacked, tree)
    return seen


def efficiency(layers):
    """(wasted bytes, efficiency score, inefficiencies) of `layers` as dive computes them.

    inefficiencies: [{"path", "layers": [indexes], "bytes": cumulative size}] for every path in
    two layers or more, largest first (then by path)."""
    seen = path_sizes(layers)
    minimum = 0
    total = 0
    wasted = 0
    matches = []
    for path, hits in seen.items():
        sizes = [s for _, s in hits]
        minimum += min(sizes)
        total += sum(sizes)
        if len(hits) >= 2:
            wasted += sum(sizes)
            matches.append({"path": path, "layers": [i for i, _ in hits], "bytes": sum(sizes)})
    score = 1.0 if total == 0 else float(minimum) / float(total)
    matches.sort(key=lambda m: (-m["bytes"], m["path"]))
    return wasted, score, matches
