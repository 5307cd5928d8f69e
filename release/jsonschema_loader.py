"""jsonschema for every schema check of the house (k8s manifests, pilot.json, the SBOM).

Import it through `load_jsonschema`, never directly: see its docstring for why.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def load_jsonschema() -> types.ModuleType:
    """jsonschema, without paying at import for the IRI grammar nobody here checks.

    jsonschema registers its format checkers when imported, and the `iri` one imports
    rfc3987_syntax (installed with cyclonedx's json-validation extra), which builds a Lark
    grammar: one to three seconds of CPU, more than a whole render of both environments or a
    republish (upstream: python-jsonschema/jsonschema#1428). Our schemas (k8s, pilot.json) and
    kubernetes-validate assert no IRI format, so that module is put behind a stand-in that
    loads the real one the first time an IRI is actually checked (by anyone in this process,
    e.g. the CycloneDX SBOM check): the checks stay the same, only their cost moves to where
    it is used.
    """
    if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        try:
            found = importlib.util.find_spec("rfc3987_syntax") is not None
        except (ImportError, ValueError):
            found = False
        if found:
            sys.modules["rfc3987_syntax"] = _deferred_rfc3987_syntax()
    import jsonschema

    module: types.ModuleType = jsonschema
    return module


def _deferred_rfc3987_syntax() -> types.ModuleType:
    stand_in = types.ModuleType("rfc3987_syntax", "loads the real rfc3987_syntax when first used")

    def is_valid_syntax(rule: str, text: str) -> bool:
        if sys.modules.get("rfc3987_syntax") is stand_in:
            del sys.modules["rfc3987_syntax"]
        import rfc3987_syntax

        result: bool = rfc3987_syntax.is_valid_syntax(rule, text)
        return result

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    return stand_in
