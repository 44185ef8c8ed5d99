"""Start-up of ``python -m timeseries``: the command does only the work its runs need."""

import subprocess
import sys


def test_paper_models_do_not_load_the_attention_registry():
    """Listing the registry imports every mechanism (about 1.6 s, torch._dynamo among them): the parser and the paper
    models must not need it, while the help and an unknown model's error still list every registry name."""
    code = """
import pkgutil, sys
import core.attention
from timeseries.cli import _models, build_parser

mechanisms = [f"core.attention.{m.name}" for m in pkgutil.iter_modules(core.attention.__path__)]
args = build_parser().parse_args([])
assert _models(args.model) == ["primalformer", "primal+trans", "transformer"], args.model
assert not all(name in sys.modules for name in mechanisms), "the registry was loaded for the paper models"
assert "flowformer" in build_parser().format_help() and "skyformer" in build_parser().format_help()
assert _models(["flowformer"]) == ["flowformer"]
try:
    _models(["no-such-attention"])
except SystemExit as error:
    assert "no-such-attention" in str(error) and "skyformer" in str(error), error
else:
    raise AssertionError("an unknown model was accepted")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_matplotlib_can_be_imported_before_the_first_plot():
    """The command imports matplotlib while its first worker waits for the fork server, not after the runs."""
    code = """
import sys
from timeseries.report import import_plotting

assert "matplotlib" not in sys.modules, "timeseries.report imported matplotlib by itself"
assert import_plotting() and "matplotlib.pyplot" in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_objects_are_frozen_at_exit(tmp_path):
    """The command freezes the garbage collector at exit, so that the interpreter's last collections skip the
    objects of torch, sktime and matplotlib; before that, collections are untouched."""
    code = f"""
import atexit, gc
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after the command's handlers
from timeseries.cli import main

assert main(["--dataset", "Missing", "--data-dir", {str(tmp_path)!r}, "--out", {str(tmp_path / "out")!r}]) == 2
assert gc.get_freeze_count() == 0, "frozen before exit"
"""
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip().endswith("frozen at exit: True"), result.stdout + result.stderr
