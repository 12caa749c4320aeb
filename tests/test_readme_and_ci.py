"""The README's two commands are what CI runs and what a newcomer types."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_the_two_commands():
    run, test = readme_commands()[:2]
    assert run.endswith("python -m grlib run") and test.endswith("python -m pytest")
    assert (ROOT / "README.md").read_text().index(run) < 400


def test_ci_runs_the_readme_test_command():
    test = readme_commands()[1]
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()
