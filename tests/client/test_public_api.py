"""The public surface: ``__all__`` is complete, documented, typed and owned by the package."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest

import apiward.client
import apiward.client.testing

PACKAGE = Path(apiward.client.__file__).parent


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }


def test_all_lists_every_public_name() -> None:
    """Everything importable from ``apiward.client`` without an underscore is in ``__all__``."""
    assert public_names(apiward.client) == set(apiward.client.__all__)
    assert sorted(apiward.client.__all__) == apiward.client.__all__


def test_testing_all_lists_everything_it_defines() -> None:
    """``apiward.client.testing`` exports what it defines (its imports aside)."""
    module = apiward.client.testing
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    }
    assert defined <= set(module.__all__) <= set(vars(module))


def has_example(doc: str | None) -> bool:
    return bool(doc) and ("```" in str(doc) or ">>>" in str(doc))


@pytest.mark.parametrize("name", apiward.client.__all__)
def test_every_public_name_has_a_docstring_with_an_example(name: str) -> None:
    """Each exported name documents itself with a short usage example."""
    obj = getattr(apiward.client, name)
    assert has_example(obj.__doc__), f"{name} has no docstring with an example"


@pytest.mark.parametrize(
    "name", [n for n in apiward.client.__all__ if inspect.isclass(getattr(apiward.client, n))]
)
def test_public_methods_and_properties_have_docstrings(name: str) -> None:
    """Methods a class adds (not those inherited from httpx) are documented."""
    cls = getattr(apiward.client, name)
    for attr, value in vars(cls).items():
        if attr.startswith("_") or attr in ("default_status",):
            continue
        if callable(value) or isinstance(value, property):
            inherited = any(attr in vars(base) for base in cls.__mro__[1:])
            assert inherited or inspect.getdoc(value), f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name", apiward.client.testing.__all__)
def test_testing_names_are_documented(name: str) -> None:
    """The fake server's public names say what they are."""
    obj = getattr(apiward.client.testing, name)
    if inspect.isclass(obj):
        assert has_example(obj.__doc__)
        for attr, value in vars(obj).items():
            if not attr.startswith("_") and callable(value):
                assert inspect.getdoc(value), f"FakeApiward.{attr} has no docstring"
    assert has_example(apiward.client.testing.__doc__)


@pytest.mark.parametrize(
    "name", [n for n in apiward.client.__all__ if inspect.isclass(getattr(apiward.client, n))]
)
def test_public_classes_belong_to_the_package(name: str) -> None:
    """Tracebacks and docs show ``apiward.client.Client``, not a private module (httpx)."""
    assert getattr(apiward.client, name).__module__ == "apiward.client"


def test_py_typed_marker_is_shipped() -> None:
    """PEP 561: type checkers use the SDK's annotations."""
    assert (PACKAGE / "py.typed").is_file()


def test_modules_other_than_the_public_ones_are_private() -> None:
    """httpx's layout: ``_modules`` hold the code, ``__init__`` and ``testing`` are public."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert [m for m in modules if not m.startswith("_")] == ["testing.py"]
    assert "__init__.py" in modules
