"""docs/reference.md is the CreditModel CRD rendered by hack/crd_docs.py (`make manifests`), so
the reference cannot drift from what the API server enforces and `kubectl explain` shows."""

from __future__ import annotations

import copy
import importlib.util
from types import ModuleType

import pytest

from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit


def crd_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crd_docs", REPO_ROOT / "hack" / "crd_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_the_generated_one() -> None:
    module = crd_docs()
    committed = (REPO_ROOT / "docs" / "reference.md").read_text()
    assert committed == module.render(module.load_crd()), "run `make manifests`"


def test_every_field_has_a_row_with_its_description() -> None:
    module = crd_docs()
    crd = module.load_crd()
    page = module.render(crd)
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path, node, _ in module.fields(schema["properties"][part], part):
            row = next((line for line in page.splitlines() if line.startswith(f"| `{path}` |")), "")
            assert row, f"{path} has no row"
            words = " ".join(node.get("description", "").split())[:40].replace("|", "\\|")
            assert words in row, f"{path}: description missing"


def test_a_changed_crd_changes_the_page() -> None:
    """The page follows the CRD: a new field, a new default and a new rule all show up."""
    module = crd_docs()
    crd = copy.deepcopy(module.load_crd())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    predictor = schema["properties"]["spec"]["properties"]["predictor"]
    predictor["properties"]["warmupSeconds"] = {
        "type": "integer",
        "minimum": 0,
        "maximum": 600,
        "default": 5,
        "description": "Seconds of warm-up | before Ready.",
    }
    predictor.setdefault("x-kubernetes-validations", []).append(
        {"rule": "self.warmupSeconds < 300", "message": "warm-up too long"}
    )
    page = module.render(crd)
    assert (
        "| `spec.predictor.warmupSeconds` | integer | `5` | >= 0; <= 600 |"
        " Seconds of warm-up \\| before Ready. |"
    ) in page
    assert (
        "| `creditmodel.spec.predictor` | `self.warmupSeconds < 300` | warm-up too long |" in page
    )
    assert page != module.render(module.load_crd())
