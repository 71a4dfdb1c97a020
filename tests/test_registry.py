"""The generic registry: decorator and lazy registration, duplicates, did-you-mean."""

import subprocess
import sys

import pytest

from bench.errors import EraselabError
from bench.registry import Registry


def test_register_and_get():
    reg = Registry("widget")

    @reg.register("alpha", summary="first")
    class Alpha:
        pass

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha"]
    assert reg.entry("alpha").summary == "first"


def test_duplicate_name_rejected():
    reg = Registry("widget")
    reg.register("alpha")(type("A", (), {}))
    with pytest.raises(ValueError, match="duplicate widget name 'alpha'"):
        reg.register("alpha")(type("B", (), {}))
    with pytest.raises(ValueError, match="duplicate"):
        reg.register_lazy("alpha", "json:dumps")


def test_unknown_name_suggests_close_match():
    reg = Registry("method")
    for name in ("fewshot-te", "esd-x", "esd-u"):
        reg.register_lazy(name, "json:dumps")
    with pytest.raises(EraselabError, match=r"unknown method 'fewshot-tee'; did you mean 'fewshot-te'"):
        reg.get("fewshot-tee")
    with pytest.raises(EraselabError, match="known: esd-u, esd-x, fewshot-te"):
        reg.get("zzz")


def test_lazy_entry_imports_on_first_use_only():
    reg = Registry("thing")
    reg.register_lazy("dumps", "json:dumps", summary="json")
    assert not reg.entry("dumps").loaded
    import json
    assert reg.get("dumps") is json.dumps
    assert reg.entry("dumps").loaded


def test_lazy_declaration_is_fulfilled_by_decorator_of_same_target():
    reg = Registry("thing")
    reg.register_lazy("x", f"{__name__}:_Target")
    reg.register("x")(_Target)  # the module registering itself on import is not a duplicate
    assert reg.get("x") is _Target


class _Target:
    pass


def test_ls_does_not_import_torch():
    code = ("import sys; from bench.cli import main; main(['ls', 'methods']); "
            "main(['ls', 'detectors']); main(['ls', 'concepts']); "
            "assert 'torch' not in sys.modules, 'ls imported torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
