"""The architecture the layout promises: ai/ never imports backend/, and the web process never loads torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ai_imports_nothing_from_backend():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "ai").rglob("*.py") if "backend" in _imports(p)]
    assert offenders == []


def test_backend_never_imports_torch_directly():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "backend").rglob("*.py")
        if _imports(p) & {"torch", "transformers", "rembg", "onnxruntime"}
    ]
    assert offenders == []


def test_web_process_and_worker_start_without_loading_torch():
    code = (
        "import sys, backend.app, backend.api.media, backend.api.results, backend.worker, backend.tasks.runner,"
        " backend.cli; print(sorted(m for m in ('torch', 'transformers', 'rembg', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
