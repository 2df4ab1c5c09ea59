"""Times the official zero-shot scorer per data folder, in one process, for
tools/bench_official.py. Run with the official pipeline (unmodified) on PYTHONPATH:

    python tools/official_timer.py plan.json   # plan: [[module, argv...], ...]

prints one JSON line: the seconds of each entry, and the seconds the imports took. Each
entry runs what one `python -m <module> <argv>` of eval_zero_shot_fast.sh runs (the module
as __main__: loading the model, reading the data, scoring, writing its files), without the
interpreter start and the first imports, which our side's per-task times leave out too.
Imports nothing of this project."""

import importlib
import json
import runpy
import sys
import time

started = time.perf_counter()
with open(sys.argv[1]) as f:
    plan = json.load(f)
for name in dict.fromkeys(entry[0] for entry in plan):
    importlib.import_module(name)  # torch, transformers and the rest, once
imports = time.perf_counter() - started
seconds = []
for module, *argv in plan:
    sys.argv = [module, *argv]
    began = time.perf_counter()
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    seconds.append(time.perf_counter() - began)
print(json.dumps({"imports": imports, "seconds": seconds}))
