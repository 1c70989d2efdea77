"""WORKSPACE-mode setup of rules_shiko (MODULE.bazel users need none of this).

    load("@rules_shiko//rules:repositories.bzl", "rules_shiko_dependencies")
    rules_shiko_dependencies()

`pip_lock_repository` is public too: it fetches an app's own pinned wheels the same way.
"""

load("//rules/private:pip_repository.bzl", _pip_lock_repository = "pip_lock_repository")

pip_lock_repository = _pip_lock_repository

def rules_shiko_dependencies():
    """Declares the repositories rules_shiko's own tools need (their pinned wheels)."""
    if not native.existing_rule("rules_shiko_pip"):
        pip_lock_repository(
            name = "rules_shiko_pip",
            requirements_lock = "@rules_shiko//python_tools:requirements_lock.txt",
        )
