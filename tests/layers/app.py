"""A py_binary with data and a third-party dependency, laid out with its runfiles."""

from absl import flags  # noqa: F401  (an external repository in the runfiles)

print("app")
