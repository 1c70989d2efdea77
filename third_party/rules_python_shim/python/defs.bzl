"""Offline shim for @rules_python under Bazel 4.2.3: forwards to Bazel's native Python rules.

With modern Bazel (MODULE.bazel) the real rules_python is used instead; BUILD files load
`@rules_python//python:defs.bzl` in both worlds.
"""

load(":native.bzl", "NativePyInfo", "NativePyRuntimeInfo")

def py_binary(**attrs):
    native.py_binary(**attrs)

def py_library(**attrs):
    native.py_library(**attrs)

def py_test(**attrs):
    native.py_test(**attrs)

def py_runtime(**attrs):
    native.py_runtime(**attrs)

PyInfo = NativePyInfo
PyRuntimeInfo = NativePyRuntimeInfo
