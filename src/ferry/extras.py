"""What each optional part of ferry needs, and the error that names the extra to install.

The base install (``pip install airflow-provider-ferry``) runs the transfer operators. The rest
comes in extras: ``parquet`` (pyarrow), ``sagemaker`` (the local SageMaker), ``stack`` (the local
stack's servers), ``demo`` (the demo pipelines). A part whose extra is missing fails on import, or
for parquet on first use, with a :class:`MissingExtraError` that says what to ``pip install``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

DISTRIBUTION = "airflow-provider-ferry"


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, extra: str, modules: list[str], purpose: str) -> None:
        self.extra = extra
        super().__init__(f"{purpose} needs {', '.join(modules)} (not installed): "
                         f"pip install '{DISTRIBUTION}[{extra}]'")


def require(extra: str, purpose: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every top-level module in ``modules`` is importable."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(extra, missing, purpose)


class _Missing(ModuleType):
    """Stands in for a module that is not installed; any use raises :class:`MissingExtraError`."""

    def __init__(self, name: str, extra: str, purpose: str) -> None:
        super().__init__(name)
        self._error = (extra, name.partition(".")[0], purpose)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        extra, module, purpose = self._error
        raise MissingExtraError(extra, [module], purpose)


def optional_module(name: str, extra: str, purpose: str) -> ModuleType:
    """``name`` imported, or a stand-in that raises :class:`MissingExtraError` when used.

    For modules that only some code paths need (pyarrow: parquet only), so that the rest of the
    module works without the extra.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or (name != exc.name and not name.startswith(exc.name + ".")):
            raise
        return _Missing(name, extra, purpose)
