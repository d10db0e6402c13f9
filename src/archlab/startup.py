"""Start-up: when this process started, and keeping torchmetrics' optional integrations off the
training path.

``import lightning`` imports ``torchmetrics`` (for ``Metric``), whose ``__init__`` imports *every*
metric family: BERTScore/InfoLM pull in ``transformers`` (and through it ``tokenizers``),
the plotting helpers ``matplotlib``, and a back-compat patch ``scipy.signal`` — ~2 s of the
~5 s ``import lightning`` costs here, none of it used by archlab's training step.

:func:`install` adds an import hook that acts only when ``torchmetrics`` is first imported:

* torchmetrics' availability flags for transformers / matplotlib / SciencePlots, and the
  flag that only gates the audio modules' ``scipy.signal`` back-compat patch, are set to
  False before its metric modules read them (its ``utilities/imports.py`` is loaded first,
  on its own: it depends only on ``lightning_utilities``), so those modules skip the imports;
* ``scipy`` is hidden from its top-level ``package_available("scipy")`` probe while its
  ``__init__`` runs (and the probe's cache is cleared afterwards).

Consequence, in this process only: torchmetrics' BERTScore / InfoLM and ``.plot()`` report
their optional dependency missing. archlab uses neither (``archlab compare`` plots with
matplotlib directly). ``ARCHLAB_LEAN_IMPORTS=0`` disables the hook (for A/B start-up
measurements). Any surprise (another torchmetrics layout) falls back to the normal import.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_FLAGS_OFF = (
    "_TRANSFORMERS_AVAILABLE",
    "_TRANSFORMERS_GREATER_EQUAL_4_4",
    "_TRANSFORMERS_GREATER_EQUAL_4_10",
    "_MATPLOTLIB_AVAILABLE",
    "_SCIENCEPLOT_AVAILABLE",
    "_SCIPI_AVAILABLE",
)  # (sic) only gates the audio modules' scipy.signal patch


def process_start_time() -> float | None:
    """Wall-clock time (``time.time()`` scale) this process was started, from /proc (Linux,
    10 ms resolution); None elsewhere. Start-up = first optimizer step − this."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class _TorchmetricsLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        _preload_flags(module)
        hid = "scipy" not in sys.modules
        if hid:
            sys.modules["scipy"] = None  # importlib.util.find_spec("scipy") → None
            _clear_probe_cache()  # the probe is lru_cached: forget any earlier answer
        try:
            self.inner.exec_module(module)
        finally:
            if hid and sys.modules.get("scipy", 0) is None:
                del sys.modules["scipy"]
                _clear_probe_cache()  # later probes see scipy again


def _clear_probe_cache() -> None:
    try:
        from lightning_utilities.core.imports import (
            package_available,  # exists once torchmetrics imports
        )

        package_available.cache_clear()
    except Exception:
        pass


def _preload_flags(package) -> None:
    """Load torchmetrics/utilities/imports.py alone and switch the heavy flags off."""
    name = "torchmetrics.utilities.imports"
    if name in sys.modules or not package.__spec__.submodule_search_locations:
        return
    path = os.path.join(package.__spec__.submodule_search_locations[0], "utilities", "imports.py")
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    except Exception:
        sys.modules.pop(name, None)
        return
    for flag in _FLAGS_OFF:
        if hasattr(mod, flag):
            setattr(mod, flag, False)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchmetrics":
            return None
        sys.meta_path.remove(self)  # one shot; and find the real spec without us
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _TorchmetricsLoader(spec.loader)
        return spec


def install() -> None:
    """Install the hook (idempotent; a no-op once torchmetrics is imported)."""
    if os.environ.get("ARCHLAB_LEAN_IMPORTS", "1") == "0" or "torchmetrics" in sys.modules:
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
