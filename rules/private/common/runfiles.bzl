"""Runfiles and repository paths: the one place that knows Bazel's `../<repo>/` short paths.

- `repo_relative(f)`: (repository, path inside it) of a File; "" for the main repository.
- `runfiles_path(workspace_name, short_path)`: the path below a runfiles root
  (`<workspace>/pkg/file`, `<repo>/pkg/file`).
- `stable_path(workspace_name, rpath)`: where a runfile goes in an image that must have the same
  digest in every Bazel world (WORKSPACE, Bazel 7, 8, 9): the main repository's files at their
  workspace-relative path, an external repository's under `external/<name>/`, where <name> is
  the repository's name as its user wrote it (the apparent name), never Bazel's canonical name
  (`rules_shiko~~wheels~app_pip` on Bazel 7, `rules_shiko++wheels+app_pip` on 8/9, `_main`).
- `walk_runfiles(info)`: every entry of a binary's runfiles tree, in one fixed order.
"""

def repo_relative(f):
    """(repository, path in it) of a File: ("", "pkg/file") for the main repository."""
    p = f.short_path
    if p.startswith("../"):
        repo, _, rest = p[3:].partition("/")
        return repo, rest
    return "", p

def label_repo(label):
    """A Label's repository name (canonical), "" for the main repository; `repo_name` where Bazel
    has it (workspace_name is deprecated on 7+), `workspace_name` on Bazel 4."""
    if hasattr(label, "repo_name"):
        return label.repo_name
    return label.workspace_name

def runfiles_path(workspace_name, short_path):
    """The path below the runfiles root of a short_path (`../repo/x` or `pkg/x`)."""
    if short_path.startswith("../"):
        return short_path[3:]
    return workspace_name + "/" + short_path

def apparent_repo_name(canonical):
    """The name a repository's user gave it, from Bazel's canonical repository name.

    WORKSPACE names are kept. Bzlmod: `module~version`, `module~` and `module+` (a bazel_dep)
    give `module`; `module~version~ext~name`, `module~~ext~name` and `module++ext+name` (a
    module extension's repository) give `name`.
    """
    sep = "+" if "+" in canonical else ("~" if "~" in canonical else None)
    if sep == None:
        return canonical
    parts = canonical.split(sep)
    if len(parts) >= 4:
        return parts[-1]
    return parts[0]

def stable_path(workspace_name, rpath):
    """The Bazel-version-independent place of a runfiles path (see the module docstring)."""
    repo, _, rest = rpath.partition("/")
    if repo == workspace_name or repo in ("_main", "__main__"):
        return rest
    if not rest:
        return rpath  # a file of the runfiles root itself
    return "external/%s/%s" % (apparent_repo_name(repo), rest)

def walk_runfiles(info, workspace_name):
    """Every entry of the runfiles tree of an executable's DefaultInfo, in one fixed order.

    Returns a list of structs (rpath, file, kind): kind "file" (file is the File), "empty"
    (file is None: Bazel's made-up empty files such as __init__.py) or "repo_mapping" (the
    `_repo_mapping` manifest of Bazel 7+). The executable itself is one of the files.
    """
    runfiles = info.default_runfiles
    out = []
    for f in runfiles.files.to_list():
        out.append(struct(rpath = runfiles_path(workspace_name, f.short_path), file = f, kind = "file"))
    for s in runfiles.symlinks.to_list():
        out.append(struct(rpath = workspace_name + "/" + s.path, file = s.target_file, kind = "file"))
    for s in runfiles.root_symlinks.to_list():
        out.append(struct(rpath = s.path, file = s.target_file, kind = "file"))
    for p in runfiles.empty_filenames.to_list():
        out.append(struct(rpath = runfiles_path(workspace_name, p), file = None, kind = "empty"))
    repo_mapping = getattr(info.files_to_run, "repo_mapping_manifest", None)
    if repo_mapping != None:
        out.append(struct(rpath = "_repo_mapping", file = repo_mapping, kind = "repo_mapping"))
    return out
