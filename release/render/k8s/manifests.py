"""The manifests of one k3s environment, from the Jinja2 templates in k8s/templates/.

Templates give the shape a reviewer reads; every value reaches them already serialised
(`q`: a JSON string, which YAML reads back unchanged whatever it holds; `block`: YAML
indented under its key), so no value can break the YAML around it. Keys are sorted and no
time or path is written, so the same inputs always give the same bytes.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from release.content import content_dir

if TYPE_CHECKING:
    import jinja2

#: The label every object carries, so an admin can list what dirac-release placed.
MANAGED_BY = {"app.kubernetes.io/managed-by": "dirac-release"}


def _q(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _block(value: Any, indent: int) -> str:
    """YAML text (or a mapping dumped as YAML) indented by `indent`, without a final newline."""
    text = value if isinstance(value, str) else to_yaml(value)
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in text.rstrip("\n").split("\n"))


def to_yaml(data: Any) -> str:
    """The one YAML form of rendered data: block style, sorted keys, Unicode kept, no folding
    of long strings (a folded JSON setting is hard to review)."""
    import yaml

    text: str = yaml.safe_dump(
        data, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096
    )
    return text


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(content_dir("k8s") / "templates")),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - YAML, not HTML: values arrive serialised by q/block
        keep_trailing_newline=True,
    )
    env.filters["q"] = _q
    env.filters["block"] = _block
    return env


def render_template(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
