"""Rewrite the references made from code: config/README.md from the config schema and
the score table of docs/metrics.md from the score registry.

    python scripts/config_reference.py
"""

from pathlib import Path

from cellseg import scores
from cellseg.config import load_schema, reference_markdown

REPO = Path(__file__).resolve().parents[1]

(REPO / "config" / "README.md").write_text(
    reference_markdown(load_schema(REPO / "workflow/schemas/config.schema.yaml"))
)
metrics = REPO / "docs" / "metrics.md"
text = metrics.read_text()
before, rest = text.split(scores.REFERENCE_BEGIN)
after = rest.split(scores.REFERENCE_END + "\n")[1]
metrics.write_text(before + scores.reference_markdown() + after)
