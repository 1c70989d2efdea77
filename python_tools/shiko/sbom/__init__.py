"""SBOMs from the build graph: what each layer of an image holds, by package and Bazel label."""
