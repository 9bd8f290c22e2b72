"""`python -m app.serve [streamlit flags]`: serve the app (`streamlit run app/main.py`), warm.

Before the server takes its first connection, the process imports everything the pages use (torch,
plotly, the library: ~4 s that the first visitor after a restart would otherwise wait for), and loads
every shared read-only model and every shipped preset run into the process-wide caches the pages read
(`app.session._shared_model`, `app.presets.shipped_run`). A room that opens the app together after a
restart then finds them built instead of queueing on them, and `/_stcore/health` answering means warm.
`make run`, deploy/serve_many.sh, the Dockerfile and the tests' server all start it this way."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_WARMED = {"app.main", "app.serve"}  # the entry script runs per session; this module is running
# outside a script run these warn once per call ("missing ScriptRunContext", "No runtime found"): expected here
QUIET = ("streamlit.runtime.scriptrunner_utils.script_run_context", "streamlit.runtime.caching.cache_data_api")


def app_modules() -> list[str]:
    import app

    return sorted(f"app.{m.name}" for m in pkgutil.iter_modules(app.__path__) if f"app.{m.name}" not in NOT_WARMED)


def warm() -> dict:
    """Import the app's modules and fill the shared caches; returns what was warmed (names, seconds)."""
    t0 = time.perf_counter()
    from app.threads import use_app_threads

    use_app_threads()  # the warmed weights and runs are the ones a session would build (app/threads.py)
    import streamlit  # noqa: F401  (its loggers take their configured level on import: set ours after)

    loggers = [logging.getLogger(name) for name in QUIET]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        modules = [importlib.import_module(m).__name__ for m in app_modules()]
        t_import = time.perf_counter() - t0
        from app.models import APP_MODELS, weights_seed
        from app.presets import PRESETS, shipped_run
        from app.session import _shared_model

        models, failed = [], []
        for name in APP_MODELS:  # a model that cannot load is reported, and the page says so when asked for it
            try:
                _shared_model(name, weights_seed(name, 0))
                models.append(name)
            except Exception as exc:  # noqa: BLE001 (any failure: the server still starts)
                failed.append(f"{name}: {exc}")
        runs = [p.name for p in PRESETS.values() if p.run_key is not None and shipped_run(p.run_key) is not None]
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    return {"modules": modules, "models": models, "failed": failed, "runs": runs, "import_s": t_import,
            "total_s": time.perf_counter() - t0}  # fmt: skip


def main(argv: list[str]) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    done = warm()
    print(f"Nested Learning Lab: warmed {len(done['modules'])} modules, {len(done['models'])} models, "
          f"{len(done['runs'])} preset runs in {done['total_s']:.1f} s", flush=True)  # fmt: skip
    for line in done["failed"]:
        print(f"Nested Learning Lab: could not load {line}", file=sys.stderr, flush=True)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "app" / "main.py"), *argv]
    sys.exit(cli.main())


if __name__ == "__main__":
    main(sys.argv[1:])
