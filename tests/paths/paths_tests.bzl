"""Unit tests of rules/private/common/runfiles.bzl: stable image paths in every Bazel world.

Bazel 4.2.3 (WORKSPACE) can't produce Bazel 7/8/9's canonical repository names, so the names
each world gives the same repositories are spelled out here.
"""

load("@bazel_skylib//lib:unittest.bzl", "asserts", "unittest")
load("//rules/private/common:runfiles.bzl", "apparent_repo_name", "runfiles_path", "stable_path")

def _apparent_names_test_impl(ctx):
    env = unittest.begin(ctx)
    for canonical, want in [
        ("python_app_pip", "python_app_pip"),  # WORKSPACE
        ("rules_shiko~~wheels~python_app_pip", "python_app_pip"),  # Bazel 7.1+ extension repo
        ("rules_shiko~0.1.0~wheels~python_app_pip", "python_app_pip"),  # Bazel 7.0
        ("rules_shiko++wheels+python_app_pip", "python_app_pip"),  # Bazel 8/9
        ("rules_python~~pip~rules_shiko_pip_311_absl_py", "rules_shiko_pip_311_absl_py"),
        ("rules_python++pip+rules_shiko_pip_311_absl_py", "rules_shiko_pip_311_absl_py"),
        ("rules_foo~", "rules_foo"),  # a bazel_dep, Bazel 7.1+
        ("rules_foo~1.2.3", "rules_foo"),  # Bazel 7.0
        ("rules_foo+", "rules_foo"),  # Bazel 8/9
    ]:
        asserts.equals(env, want, apparent_repo_name(canonical), canonical)
    return unittest.end(env)

apparent_names_test = unittest.make(_apparent_names_test_impl)

def _stable_paths_test_impl(ctx):
    env = unittest.begin(ctx)

    # The same file, as each world's runfiles tree names it, lands at one place in the image.
    for ws in ["rules_shiko", "_main", "my_app"]:
        asserts.equals(env, "app/main.py", stable_path(ws, runfiles_path(ws, "app/main.py")))
    for repo in ["app_pip", "rules_shiko~~wheels~app_pip", "rules_shiko++wheels+app_pip"]:
        asserts.equals(
            env,
            "external/app_pip/absl_py/site-packages/absl/app.py",
            stable_path("_main", runfiles_path("_main", "../%s/absl_py/site-packages/absl/app.py" % repo)),
        )
    asserts.equals(env, "_repo_mapping", stable_path("_main", "_repo_mapping"))
    return unittest.end(env)

stable_paths_test = unittest.make(_stable_paths_test_impl)

def paths_test_suite(name):
    unittest.suite(name, apparent_names_test, stable_paths_test)
