"""docs/methods.md documents every method and option, and the code's citations of it resolve."""

import re
from pathlib import Path

import pytest

from hssl_cli.config import METHOD_CONFIGS, AugmentConfig, ExtendedAugmentConfig
from hssl_cli.objectives import PRETEXT_TASKS

ROOT = Path(__file__).resolve().parents[1]
METHODS_DOC = ROOT / "docs" / "methods.md"
CITED_BY = ("hssl_cli", "tests", "benchmarks")


def sections() -> dict[str, str]:
    """Level-2 heading -> the text under it."""
    parts = re.split(r"^## (.+)$", METHODS_DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def method_section(name: str) -> str:
    found = [body for body in sections().values() if f"`method.name: {name}`" in body]
    assert len(found) == 1, f"docs/methods.md needs one section saying `method.name: {name}`"
    return found[0]


@pytest.mark.parametrize("name", sorted(METHOD_CONFIGS))
def test_every_option_of_every_method_is_documented(name: str) -> None:
    section = method_section(name)
    missing = [key for key in METHOD_CONFIGS[name].model_fields if key != "name"]
    missing = [key for key in missing if f"`{key}`" not in section]
    assert not missing, f"docs/methods.md, {name}: undocumented options {missing}"


def test_augmentation_keys_and_pretext_tasks_are_documented() -> None:
    shared, essl = sections()["Shared options"], method_section("essl")
    keys = set(AugmentConfig.model_fields) | set(ExtendedAugmentConfig.model_fields)
    assert not [key for key in sorted(keys) if f"`{key}`" not in shared]
    assert not [task for task in PRETEXT_TASKS if f"`{task}`" not in essl]


def cited_headings(text: str) -> list[str]:
    """The phrases after each ``docs/methods.md, `` citation, line breaks joined."""
    joined = re.sub(r"\s*\n\s*(#\s*)?", " ", text)
    return re.findall(r"docs/methods\.md, ([A-Z][\w-]*(?: [a-z]+)*)", joined)


def test_citations_of_methods_doc_name_existing_headings() -> None:
    headings = set(sections())
    broken = []
    for folder in CITED_BY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            assert "METHODS " + "§" not in text, f"{path}: cite the paper or docs/methods.md"
            for phrase in cited_headings(text):
                words = phrase.split(" ")
                prefixes = {" ".join(words[:end]) for end in range(1, len(words) + 1)}
                if not prefixes & headings:
                    broken.append(f"{path.relative_to(ROOT)}: {phrase!r}")
    assert not broken, f"citations of docs/methods.md headings that do not exist: {broken}"
