"""rules_shiko's tool libraries (no flags here): see python_tools/README.md for the map."""
