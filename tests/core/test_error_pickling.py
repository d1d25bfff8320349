"""Every project exception survives a process boundary (pickle, and a real process pool).

The classes are found by importing every module of the project's packages, so a
new error type is covered without editing this test.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from concurrent.futures import ProcessPoolExecutor

import pytest
from aiohttp import web

import dodoor.errors
from dodoor.errors import TraceFormatError, ValidationError

PACKAGES = ("dodoor", "scheduler", "node_agent", "workloads")


def _project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.endswith(".__main__"):  # running it is the command line itself
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if (issubclass(obj, BaseException) and obj.__module__ == info.name
                        # raised inside an aiohttp handler as its answer; never leaves it
                        and not issubclass(obj, web.HTTPException)):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


EXCEPTIONS = _project_exceptions()


def _sample(name: str, annotation: object) -> object:
    text = str(annotation)
    if text.startswith("int"):
        return 7
    if text.startswith("float"):
        return 1.5
    if text.startswith("bool"):
        return True
    if text.startswith("dict"):
        return {"id": f"{name}-id", "state": "failed"}
    if text.startswith("list"):
        return [f"{name}-a", f"{name}-b"]
    return f"{name}-value"


def make(cls: type[BaseException]) -> BaseException:
    """An instance built from sample arguments that match the constructor's annotations."""
    if cls.__init__ is BaseException.__init__:
        return cls("something went wrong")
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    args = [_sample(p.name, p.annotation) for p in params
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
    return cls(*args)


def same(a: BaseException, b: BaseException) -> bool:
    return (type(a) is type(b) and a.args == b.args and str(a) == str(b)
            and vars(a) == vars(b))


def raise_in_worker(cls_index: int) -> None:
    raise make(EXCEPTIONS[cls_index])


def test_the_scan_finds_the_error_types():
    names = {c.__name__ for c in EXCEPTIONS}
    assert {"DodoorError", "ValidationError", "NoFitError", "DecodeError", "TraceFormatError",
            "BodyError", "RequestError", "PeerError", "JournalError"} <= names


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_round_trips_through_pickle(cls):
    original = make(cls)
    copy = pickle.loads(pickle.dumps(original))
    assert same(original, copy), (vars(original), vars(copy))


def test_fields_of_the_two_argument_errors_survive():
    copy = pickle.loads(pickle.dumps(ValidationError("load", "must be > 0, got -1")))
    assert (copy.field, copy.reason, str(copy)) == ("load", "must be > 0, got -1",
                                                    "load: must be > 0, got -1")
    trace = pickle.loads(pickle.dumps(TraceFormatError("t.csv", 3, "cores", "not a number")))
    assert str(trace) == "t.csv:3: column cores: not a number" and trace.line == 3


def test_every_error_comes_back_from_a_worker_process():
    with ProcessPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(raise_in_worker, i) for i in range(len(EXCEPTIONS))]
        for cls, future in zip(EXCEPTIONS, futures):
            exc = future.exception(timeout=60)
            assert same(exc, make(cls)), cls


def test_the_errors_module_is_scanned():
    assert all(c in EXCEPTIONS for c in vars(dodoor.errors).values()
               if inspect.isclass(c) and issubclass(c, BaseException)
               and c.__module__ == "dodoor.errors")
