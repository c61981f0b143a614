"""Every DVC stage lists its own module and every project module it imports (DVC does not follow imports)."""
import ast
import re
from pathlib import Path

from tests.lockcheck import stage_definitions

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("pipeline", "stages")


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules imported anywhere in `path` (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PROJECT_PACKAGES and module_file(n)}
    return found


def closure(module: str) -> set[Path]:
    """Files of `module` and of every project module it imports, transitively.

    Package `__init__.py` files that hold only a docstring carry no behaviour and are left out.
    """
    seen, todo = set(), [module]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += imported_modules(path)
    return {p for p in seen if p.name != "__init__.py" or has_code(p)}


def has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def test_every_stage_lists_the_modules_it_imports():
    problems = []
    for name, stage in stage_definitions(ROOT).items():
        modules = re.findall(r"python -m (stages\.\w+)", stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"]))
        assert modules, f"stage {name} does not run a `python -m stages.<name>` module"
        deps = {str(d) for d in stage.get("deps", [])}
        for module in modules:
            for path in sorted(closure(module)):
                rel = str(path.relative_to(ROOT))
                if rel not in deps:
                    problems.append(f"{name}: {rel}")
    assert not problems, "missing deps in dvc.yaml:\n" + "\n".join(problems)


def test_closure_follows_imports_transitively(tmp_path):
    # stages.segment imports pipeline.segment, which imports pipeline.models: both must be in its closure.
    files = {str(p.relative_to(ROOT)) for p in closure("stages.segment")}
    assert {"stages/segment.py", "pipeline/segment.py", "pipeline/models.py", "pipeline/progress.py"} <= files


def test_the_diffusion_package_imports_nothing_above_it():
    # docs/CONTRIBUTING.md: the model package is a leaf; the rerank, the judges, the taggers and the metrics sit above
    above = ("pipeline/decoder.py", "pipeline/experiments/", "pipeline/finetune.py", "pipeline/judges.py",
             "pipeline/metrics/", "pipeline/rerank.py", "pipeline/tagger_data.py", "pipeline/taggers.py",
             "pipeline/tagging.py")
    for path in sorted((ROOT / "pipeline" / "diffusion").glob("*.py")):
        files = [str(p.relative_to(ROOT)) for p in closure(f"pipeline.diffusion.{path.stem}")]
        assert not [f for f in files if f.startswith(above)], path.name


def test_only_the_figures_a_run_is_judged_by_are_dvc_metrics():
    """`dvc exp show` and `dvc metrics diff` list the declared metrics: bookkeeping (the taggers' per-split figures,
    the frame tagger's coverage, timings, parsing counts) stays a plain output, so the results lead."""
    declared = {str(next(iter(m))) if isinstance(m, dict) else str(m)
                for stage in stage_definitions(ROOT).values() for m in stage.get("metrics", [])}
    assert declared == {"metrics/retrieval.json", "metrics/train.json", "dvclive/train_diffusion/metrics.json",
                        "metrics/scores.json", "metrics/steering.json", "metrics/baselines.json",
                        "metrics/steering_baselines.json"}
