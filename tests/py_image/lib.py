"""Analysis-test subject of py_image (never run)."""
VALUE = 1
