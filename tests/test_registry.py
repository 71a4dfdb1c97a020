"""The generic registry: decorator and lazy registration, duplicates, did-you-mean."""

import subprocess
import sys

import pytest

from bench.core.errors import EraselabError
from bench.core.registry import Registry


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


# -- summaries and names are written once --------------------------------------------------
def test_a_second_different_summary_is_an_error_not_dropped():
    reg = Registry("thing")
    reg.register_lazy("x", f"{__name__}:_Target", summary="declared")
    with pytest.raises(ValueError, match="two summaries, 'declared' .* and 'other'"):
        reg.register("x", summary="other")(_Target)
    reg.register("x", summary="declared")(_Target)  # the same words twice are one fact
    assert reg.get("x") is _Target and reg.entry("x").summary == "declared"


def test_a_decorators_summary_fills_an_empty_declaration():
    reg = Registry("thing")
    reg.register_lazy("x", f"{__name__}:_Target")
    reg.register("x", summary="from the decorator")(_Target)
    assert reg.entry("x").summary == "from the decorator"
    reg.register("y")(_Documented)  # no summary anywhere: the docstring's first line
    assert reg.entry("y").summary == "A documented target."


def test_fulfil_and_bind():
    bound = []
    reg = Registry("thing", bind=lambda name, obj: bound.append((name, obj)))
    reg.register_lazy("x", f"{__name__}:_Target")
    assert reg.fulfil(_Documented) is None
    assert reg.fulfil(_Target) == "x" and reg.entry("x").loaded
    assert reg.get("x") is _Target
    reg.register("y")(_Documented)
    assert bound == [("x", _Target), ("y", _Documented)]  # once each


class _Documented:
    """A documented target.

    More text."""


# -- the method table against the method classes ---------------------------------------------
def _method_modules():
    import importlib
    import pkgutil

    import methods
    return [importlib.import_module(f"methods.{m.name}") for m in pkgutil.iter_modules(methods.__path__)]


def test_the_method_table_and_the_classes_agree():
    import inspect

    import methods
    from methods.base import ErasureMethod

    table = {name: target for name, target, _ in methods.TABLE}
    assert len(table) == len(methods.TABLE), "a name twice in methods.TABLE"
    for name, target in table.items():  # every entry imports a class registered under its name
        cls = methods.METHODS.get(name)
        assert inspect.isclass(cls) and issubclass(cls, ErasureMethod), name
        assert f"{cls.__module__}:{cls.__qualname__}" == target and cls.name == name
        assert "name" not in vars(cls) or vars(cls)["name"] == name
    defined = {f"{c.__module__}:{c.__qualname__}": c for module in _method_modules()
               for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, ErasureMethod) and c is not ErasureMethod
               and c.__module__ == module.__name__ and not c.__name__.startswith("_")
               and not vars(c).get("shared_base")}
    assert set(defined) == set(table.values()), "a method class missing from methods.TABLE (or gone)"
    assert set(methods.METHODS.names()) == set(table), "registered in code but not in methods.TABLE"
    # the summary `ls methods` shows is the table's, for every method
    assert {e.name: e.summary for e in methods.METHODS.entries()} == {n: s for n, _, s in methods.TABLE}


def test_ls_methods_lists_the_tables_summaries(capsys):
    import methods
    from bench.cli import main
    assert main(["ls", "methods", "--json"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["summary"]) for r in rows] == sorted((n, s) for n, _, s in methods.TABLE)


def test_a_new_method_registers_with_one_decorator(tmp_path):
    """The contributor's path: subclass, decorate, erase; the battery would pick it up by name."""
    import dataclasses

    from bench.tiny import tiny_pipeline
    from methods import METHODS
    from methods.base import ErasureMethod
    from methods.erase import erase

    @dataclasses.dataclass
    class Cfg:
        params: str = "xattn-kv"

    @METHODS.register("throwaway-zero-kv", summary="test only: zero the cross-attention keys/values")
    class ZeroKv(ErasureMethod):
        Config = Cfg

        def apply(self, ctx):
            import torch
            from methods.delta import named_tensors
            tensors = named_tensors(ctx.pipe)
            with torch.no_grad():
                for n in self.trainable(ctx.pipe, ctx.config):
                    tensors[n].zero_()

    try:
        assert ZeroKv.name == "throwaway-zero-kv"
        result = erase(tiny_pipeline(), "throwaway-zero-kv", "snoopy", progress=False)
        assert result.record["method"] == "throwaway-zero-kv" and result.delta
        assert all(".attn2.to_k." in n or ".attn2.to_v." in n for n in result.delta)
    finally:
        METHODS._entries.pop("throwaway-zero-kv")
    with pytest.raises(TypeError, match="not a subclass of ErasureMethod"):
        METHODS.register("throwaway-not-a-method")(_Target)
    assert "throwaway-not-a-method" not in METHODS
