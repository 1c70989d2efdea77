"""rules_shiko's build tools: each module is one verb run as a Bazel action."""
