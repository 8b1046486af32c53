"""sglab: study forward, update and backward locking with Decoupled Neural Interfaces.

The public API is re-exported here; submodules starting with an underscore are private.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sglab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from sglab.methods import METHODS, Method, get_method
from sglab.ops import Action

__all__ = ["Action", "METHODS", "Method", "get_method", "__version__"]
