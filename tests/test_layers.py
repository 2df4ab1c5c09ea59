"""The modules' layers: imports go one way, evaluation -> training -> data and models ->
utils, and only the front end (run.py, tools/bench.py) knows the command line. Every import
counts, the ones inside functions too, so no cycle can hide behind a lazy import. Read
from the source with `ast` (nothing is imported here)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

LAYERS = {
    # 0: plumbing
    "utils": 0,
    # 1: raw text, tokens and models
    "corpus.cleaning": 1, "corpus.editions": 1, "corpus.stats": 1, "pretraining_dataset": 1,
    "corpus.fetch": 1, "corpus.download": 1, "corpus.blimp_download": 1,
    "tokenizer": 1,
    "custom_models": 1, "hybrid_model": 1,
    # 2: the training machinery both loops share, and the loops
    "training.hardware": 2, "training.setup": 2, "training.validation": 2, "training.losses": 2,
    "training.distributed": 2, "training.curriculum": 2, "pytorch_training_loop": 2, "huggingface_trainer_loop": 2,
    "training.model_card": 2,
    "training.run_folder": 2, "training.plan": 2, "training.optim": 2, "training.objective": 2, "training.tracking": 2,
    "training.teachers": 2, "training.identity": 2,
    # 3: evaluation of saved models
    "evaluation.testset": 3, "evaluation.blimp": 3, "evaluation.finetune": 3, "evaluation.learning_curve": 3,
    "evaluation.finetune_data": 3, "evaluation.finetune_protocol": 3,
    "evaluation.report": 3, "evaluation.scoring": 3, "evaluation.reading": 3, "evaluation.zero_shot": 3,
    "evaluation.layout": 3, "evaluation.checkpoints": 3, "evaluation.aoa": 3, "evaluation.submission": 3,
    "evaluation.fast_scores": 3, "evaluation.official": 3,
    "evaluation.export": 3, "evaluation.tasks": 3, "evaluation.official_download": 3,
    # 4: the front end and tools
    "argument_parser": 4, "run": 4, "tools.bench": 4, "tools.bench_report": 4, "tools.gpu_check": 4,
    "tools.download": 4, "tools.bench_official": 4, "tools.official_timer": 4, "tools.work_bound": 4,
    "cli_options": 4, "cli_config": 4, "tools.make_dry_run": 4,
}
PACKAGES = ("training", "evaluation", "corpus", "tools")
FRONT_END = {"run", "tools.bench", "tools.bench_official"}  # the only importers of argument_parser


def project_imports(source: str) -> set[str]:
    """The project modules `source` imports, anywhere in it (`from training import setup` and
    `import training.setup` both name training.setup)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & set(LAYERS)


def violations(sources: dict[str, str]) -> list[str]:
    """Every import that goes up a layer, reaches the command line from outside the front
    end, or closes a cycle; and every module without a layer."""
    problems = [f"{name}.py has no layer in tests/test_layers.py" for name in sources if name not in LAYERS]
    graph = {name: project_imports(text) - {name} for name, text in sources.items() if name in LAYERS}
    for name, deps in graph.items():
        for dep in sorted(deps):
            if LAYERS[dep] > LAYERS[name]:
                problems.append(f"{name} (layer {LAYERS[name]}) imports {dep} (layer {LAYERS[dep]})")
            if dep == "argument_parser" and name not in FRONT_END:
                problems.append(f"{name} imports the command line (argument_parser)")

    def cycle_from(start: str, node: str, path: list[str]) -> list[str] | None:
        for dep in sorted(graph.get(node, ())):
            if dep == start:
                return [*path, dep]
            if dep not in path:
                found = cycle_from(start, dep, [*path, dep])
                if found:
                    return found
        return None

    cycles = {tuple(sorted(c)): c for c in (cycle_from(n, n, [n]) for n in graph) if c}
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles.values()]
    return problems


def project_sources() -> dict[str, str]:
    """Every module of the project (the root's and the packages'), by dotted name."""
    paths = [*Path(ROOT).glob("*.py"), *(p for pkg in PACKAGES for p in (Path(ROOT) / pkg).glob("*.py"))]
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p.read_text(encoding="utf-8")
            for p in sorted(paths) if p.name != "__init__.py"}


def test_imports_go_one_way_without_cycles():
    assert violations(project_sources()) == []


def test_an_upward_import_a_cycle_and_the_cli_in_the_core_are_caught():
    sources = project_sources()
    upward = {**sources, "utils": sources["utils"] + "\nfrom evaluation import blimp\n"}
    assert "utils (layer 0) imports evaluation.blimp (layer 3)" in violations(upward)
    setup = sources["training.setup"]
    lazy_cli = {**sources, "training.setup": setup + "\ndef f():\n    import argument_parser\n"}
    assert "training.setup imports the command line (argument_parser)" in violations(lazy_cli)
    cycle = {**sources, "training.losses": sources["training.losses"] + "\ndef f():\n    import training.curriculum\n",
             "training.curriculum": sources["training.curriculum"] + "\ndef g():\n    from training import losses\n"}
    assert any(p.startswith("import cycle:") and "losses" in p and "curriculum" in p for p in violations(cycle))
    assert violations({**sources, "newmodule": ""}) == ["newmodule.py has no layer in tests/test_layers.py"]
