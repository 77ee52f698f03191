"""The package as users get it: the layout's import graph, and a wheel installed outside the checkout."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "csg_hub"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the csg_hub modules it imports (at any level of the file, lazy imports included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (
                    f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
                )
                targets = [target]
                # `from . import x` / `from .pkg import mod` import submodules
                targets += [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def test_layout_has_no_import_cycles():
    graph = _import_graph()
    assert "csg_hub.testing.hub_server" in graph and "csg_hub.hub.cards" in graph
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt == "csg_hub":  # the package root only re-exports; submodules never import it back
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if not state.get(nxt):
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])
    # data flows model -> artifact -> Hub: the Hub side never reaches back into the models
    hub_modules = [m for m in graph if m.startswith("csg_hub.hub")]
    assert not [m for m in hub_modules if graph[m] & {"csg_hub.modeling", "csg_hub.vae", "csg_hub.training"}]
    assert not [m for m in graph if "csg_hub" in graph[m] and m != "csg_hub"]


@pytest.mark.slow
def test_import_csg_hub_loads_no_test_double():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, csg_hub; print(sorted(m for m in sys.modules if 'testing' in m and 'csg_hub' in m))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"


WHEEL_SCRIPT = """
import json, sys
from pathlib import Path

import torch
from huggingface_hub import ModelCard, hf_hub_download
from transformers import AutoModelForImageClassification

import csg_hub

assert Path(csg_hub.__file__).is_relative_to(Path(sys.argv[1])), csg_hub.__file__
config = csg_hub.CSGConfig(architecture="resnet18", in_chans=1, num_labels=10, image_size=32)
model = csg_hub.CSGForImageClassification(config).eval()
model.save_pretrained("saved")
card = csg_hub.model_card(model, "org/saved", results=[csg_hub.accuracy_result(12.5, "some/dataset")])
card.save("saved/README.md")
repo_id = sys.argv[2]
model.push_to_hub(repo_id, results=[csg_hub.accuracy_result(12.5, "some/dataset")], training_command="python x.py")
again = AutoModelForImageClassification.from_pretrained(repo_id)
x = torch.randn(2, 1, 32, 32)
with torch.no_grad():
    same = torch.equal(model(x).logits, again(x).logits)
pushed = ModelCard.load(repo_id)
print(json.dumps({
    "same": same,
    "local_card": Path("saved/README.md").read_text(),
    "hub_card": str(pushed),
    "accuracy": pushed.data.eval_results[0].metric_value,
}))
"""


@pytest.mark.slow
@pytest.mark.integration
def test_wheel_installed_outside_checkout_saves_pushes_and_reloads(hub_server, tmp_path):
    # build from a copy: the checkout stays free of build/ and egg-info
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source / "csg_hub", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], check=True,
                   capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("csg_hub-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True, capture_output=True)
    assert (site / "csg_hub/hub/templates/model_card.md").is_file()
    assert (site / "csg_hub/zoo_index.json").is_file()  # list_pretrained / pretrained_info read it from the wheel

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "check.py").write_text(textwrap.dedent(WHEEL_SCRIPT))
    repo_id = f"csg-hub/wheel-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "check.py", str(site), repo_id], cwd=work, env=env, capture_output=True, check=False,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same"]
    assert result["accuracy"] == 12.5
    for card in (result["local_card"], result["hub_card"]):
        assert "## Compression" in card and "omidvar2021associative" in card
    assert "python x.py" in result["hub_card"]
