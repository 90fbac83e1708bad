"""The integration platform from Python: providers, credentials, connections, governed runs,
failures and webhooks over ``integration::platform`` (see bindings/README.md)."""

from ._native import *  # noqa: F401,F403
from ._native import __version__  # noqa: F401
from ._native import _execute_from_cpp, _get_run_from_cpp, _run_as_dict  # noqa: F401
