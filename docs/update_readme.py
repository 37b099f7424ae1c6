"""Regenerates the configuration reference tables in README.md from the config schemas (`make docs`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.tomlconfig import markdown_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def sections() -> dict[str, str]:
    from hq.config import HqConfig

    return {"gateway-config-reference": markdown_reference(GatewayConfig),
            "hq-config-reference": markdown_reference(HqConfig)}


def render(text: str) -> str:
    for name, table in sections().items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name} --> block")
        text = pattern.sub(lambda m, table=table: m.group(1) + table + m.group(2), text)
    return text


def main() -> int:
    text = README.read_text()
    updated = render(text)
    if "--check" in sys.argv:
        return 0 if updated == text else 1
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
