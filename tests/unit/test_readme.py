"""The README's configuration reference is generated from the schemas: it must not drift."""

from docs.update_readme import README, render


def test_readme_configuration_reference_is_current() -> None:
    text = README.read_text()
    assert render(text) == text, "README.md is stale: run `make docs`"
