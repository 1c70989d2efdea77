"""Re-exports Bazel's built-in Python providers (a top-level `PyInfo = PyInfo` is illegal)."""

NativePyInfo = PyInfo
NativePyRuntimeInfo = PyRuntimeInfo
