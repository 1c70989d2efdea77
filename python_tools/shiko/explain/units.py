"""Sizes and percentages as people read them (decimal units, as dive and docker print)."""


def human(n):
    """1234567 -> '1.2 MB'; 999 -> '999 B'."""
    n = int(n)
    if abs(n) < 1000:
        return "%d B" % n
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000.0
        if abs(n) < 999.95 or unit == "TB":
            return "%.1f %s" % (n, unit)
    raise AssertionError("unreachable")


def percent(x):
    """0.98765 -> '98.8 %'."""
    return "%.1f %%" % (100.0 * x)


def plural(n, word, words=None):
    """plural(1, 'file') -> '1 file'; plural(2, 'file') -> '2 files'."""
    return "%d %s" % (n, word if n == 1 else (words or word + "s"))
