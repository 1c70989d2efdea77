"""A tiny py_binary whose runfiles the analysis tests lay out."""
print("tool")
