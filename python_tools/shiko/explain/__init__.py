"""See python_tools/README.md."""
