"""Rewrite config/README.md from the config schema: python scripts/config_reference.py"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from cellseg.config import load_schema, reference_markdown  # noqa: E402

(REPO / "config" / "README.md").write_text(
    reference_markdown(load_schema(REPO / "workflow/schemas/config.schema.yaml"))
)
