"""Analysis-test subject of py_image (never run)."""
from tests.py_image import lib

print(lib.VALUE)
