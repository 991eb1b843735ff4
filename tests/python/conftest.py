# Lets the tests import the in-tree package (python/fia) when it is not installed.
import os
import sys

_root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
try:
    import fia.models  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.abspath(_root))
