"""What learners and teachers read says what they need, and every measured number in it is computed: lessons,
the README and the teacher's guide quote the papers' numbers and the course's settings, never a result typed by
hand (results are printed by the cell that computes them, or rendered from the record, docs/record.md); no commit
hashes outside the record; openings, cells, notebooks, the README and docstrings short enough to read."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from grlib.continual import profiles
from grlib.course import papers, record

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
READ_BY_PEOPLE = [REPO / "README.md", REPO / "docs" / "teaching.md"]
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")

NUMBER_WORD = (r"(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
               r"seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|a hundred)"
               r"(?:-\w+)?")
MEASURED = {  # what a number reads as when a run produced it
    "a score with decimals": re.compile(r"(?<![\w.,])[1-9]\d{0,2}\.\d{1,2}(?![\d.])"),
    "a percentage": re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%"),
    "a duration": re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:\s?(?:ms|sec|seconds?|min|minutes?|hours?)|\s[sh])\b"),
    "a difference in points": re.compile(rf"(?<![\w.])(?:\d+(?:\.\d+)?|{NUMBER_WORD}|one)\s+(?:percentage\s+)?points?\b",
                                         re.I),
    "a ratio": re.compile(rf"(?<![\w.])(?:\d+(?:\.\d+)?\s?×(?!\s?\d)|(?:\d+(?:\.\d+)?|{NUMBER_WORD})\s+times\b)", re.I),
}
THOUSANDS = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\d,])")


def settings() -> set[float]:
    """Numbers the course sets rather than measures: every profile's budgets, and the datasets' sizes."""
    values = {60000, 50000, 10000, 1000}
    for profile in profiles.PROFILES.values():
        for value in profile.as_dict().values():
            values.update(value if isinstance(value, tuple) else [value])
    return {v for v in values if isinstance(v, (int, float))}


def prose(markdown: str) -> str:
    """Markdown without what may hold any number: code, maths, links' targets and the rendered blocks."""
    markdown = record.BLOCK.sub("", markdown)
    markdown = record.RUNNING_TIME.sub("", markdown)
    markdown = re.sub(r"Python\s*(?:≥|>=)?\s*\d+\.\d+", " ", markdown)  # a version, not a result
    for pattern in (r"```.*?```", r"`[^`]*`", r"\$\$.*?\$\$", r"\$[^$]*\$", r"\]\([^)]*\)", r"<!--.*?-->"):
        markdown = re.sub(pattern, " ", markdown, flags=re.S)
    return markdown


def measured_numbers(markdown: str) -> list[str]:
    """The numbers in `markdown` that read as measured and are not the papers' or the course's settings."""
    text, published, allowed = prose(markdown), papers.published_numbers(), settings()
    found = [f"{kind}: {m.group(0)!r}" for kind, pattern in MEASURED.items() for m in pattern.finditer(text)
             if not (kind == "a score with decimals" and float(m.group(0)) in published)
             and not (kind == "a percentage" and float(m.group(0).rstrip("% ")) in published)]
    found += [f"a count: {m.group(0)!r}" for m in THOUSANDS.finditer(text)
              if int(m.group(0).replace(",", "")) not in allowed]
    return found


def markdown_cells(nb: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown"]


def solution_comments(nb: Path) -> list[str]:
    """The comments of the worked solutions, where an answer is explained."""
    cells = [c for c in json.loads(nb.read_text())["cells"] if "solution" in c["metadata"].get("tags", [])]
    return [line[line.index("#"):] for c in cells for line in "".join(c["source"]).splitlines() if "#" in line]


def words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def docstrings() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / "grlib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    found.append((f"{path.relative_to(REPO)}:{getattr(node, 'name', 'module')}", doc))
    return found


def test_the_rule_catches_typed_results_and_lets_the_papers_and_settings_through():
    typed = ("asked for 2,500 of each class", "DGR 85.3, MeRGAN 92.3", "it took 5 min 14 s", "in 397 s",
             "some thirteen times fine-tuning's compute", "wins by 10 points or more", "agrees on 76.8%",
             "a 50× speed-up", "it cost three points")
    for text in typed:
        assert measured_numbers(text), text
    quoted = ("DDGR's 60.04 on CIFAR-100", "Table 1: 98.81%", "a pool of 10,000 images, 60,000 training images",
              "$\\lambda = 0.995$ and `validation=0.1`", "28×28 pixels, 2×2 blocks", "η = 0.5, d = 0.995",
              "the DDPM paper's FID of 3.17", "the 0s and 1s of task 1", "<!-- begin bench -->\n| dgr | 85.3 |\n<!-- end bench -->")
    for text in quoted:
        assert not measured_numbers(text), (text, measured_numbers(text))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_a_notebook_quotes_no_measured_number_it_does_not_compute(nb):
    found = [f"markdown cell {k}: {n}" for k, cell in enumerate(markdown_cells(nb)) for n in measured_numbers(cell)]
    found += [f"a solution's comment: {n}" for line in solution_comments(nb) for n in measured_numbers(line)]
    assert not found, (f"{nb.name} types numbers a run produces; print them from the cell that computes them, "
                       f"render them from the record, or link docs/record.md: {found}")


@pytest.mark.parametrize("path", READ_BY_PEOPLE, ids=lambda p: p.name)
def test_the_readme_and_the_guide_quote_no_measured_number_by_hand(path):
    found = measured_numbers(path.read_text())
    assert not found, f"{path.name} types numbers a run produces (render them from the record instead): {found}"


def test_no_commit_hash_outside_the_record():
    texts = [(p.name, p.read_text()) for p in NOTEBOOKS + READ_BY_PEOPLE] + docstrings()
    named = [where for where, text in texts if COMMIT.search(text)]
    assert not named, f"commit hashes belong in docs/record.md only: {named}"


def test_openings_cells_notebooks_and_the_readme_are_short_enough_to_read():
    assert words((REPO / "README.md").read_text()) <= 900
    for nb in NOTEBOOKS:
        cells = markdown_cells(nb)
        assert words(cells[0]) <= 350, f"{nb.name}: its opening has {words(cells[0])} words"
        assert max(map(words, cells)) <= 450, f"{nb.name}: a markdown cell has {max(map(words, cells))} words"
        assert sum(map(words, cells)) <= 2200, f"{nb.name}: {sum(map(words, cells))} words of markdown; split it"


def test_docstrings_say_what_and_why_in_a_few_lines():
    long = [f"{where} ({words(doc)} words)" for where, doc in docstrings() if words(doc) > 120]
    assert not long, f"docstrings over 120 words (measurements go to docs/record.md): {long}"
    typed = [f"{where}: {numbers}" for where, doc in docstrings() if (numbers := measured_numbers(doc))]
    assert not typed, f"docstrings narrating measurements (they go to docs/record.md): {typed}"


def test_every_opening_states_its_running_time_from_its_metadata():
    for nb in NOTEBOOKS:
        assert record.running_time(nb) in markdown_cells(nb)[0], \
            f"{nb.name}: its opening's running time is not its metadata's; run `python -m grlib docs`"


def test_the_rendered_text_is_up_to_date_with_the_record():
    assert not record.update(write=False), "README, the record or the guide are stale: run `python -m grlib docs`"
