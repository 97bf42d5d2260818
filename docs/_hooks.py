"""mkdocs hooks: pages of the documentation site that are generated from the code at build time.

A page asks for a generated part with a marker comment on a line of its own:

* ``<!-- statewise:config-reference -->``: every config key, type, default and meaning (``statewise config``'s source);
* ``<!-- statewise:algorithms -->``: the algorithm presets (``statewise.config.preset_table()``).

The docstrings that the API reference renders cross-reference in Sphinx's style (``:func:`train```); mkdocstrings
leaves the role in the text, so the rendered page drops it and keeps the name as code.
"""

from __future__ import annotations

import re
from typing import Any

from statewise.config import preset_table, reference_markdown

_PARTS = {
    "<!-- statewise:config-reference -->": reference_markdown,
    "<!-- statewise:algorithms -->": preset_table,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for marker, make in _PARTS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc):(?=<code>)")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return _ROLE.sub("", html)
