"""The methods, PatchCore and SemiREST, over the same features and bank; importing this package
registers both in :data:`METHODS`."""
from semirest.core.methods import patchcore, semirest  # noqa: F401  (each registers itself)
from semirest.core.methods.registry import METHODS, Method, register_method

__all__ = ["METHODS", "Method", "register_method"]
