"""The course's notebooks as the runner and the sweep see them: which there are, the parameters each declares and
checks, what its metadata says it reads, loads and takes, the order to run them in, where their outputs may go,
and the learners' copy without solutions."""
from __future__ import annotations

import ast
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from grlib.core.config import REPO_ROOT, build_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
UNATTENDED = {"interactive": False}  # what the runner and the sweep give the notebooks that declare it: no widgets


def kernel_env(out: Path) -> dict[str, str]:
    """What the kernels the runner and the sweep start are told by environment (`grlib.core.config`): where to
    write, and to end each progress bar as one line of text."""
    return {"GRLIB_BUILD": str(out), "GRLIB_PROGRESS": "text"}


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: Sequence[str] | None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """Notebooks named by number ("01") or stem ("01_catastrophic_forgetting"); all when `only` is empty."""
    available = list_notebooks(folder)
    if not only:
        return available
    chosen = []
    for name in only:
        matches = [p for p in available if name in (p.stem, p.stem[:2], p.name)]
        if not matches:
            raise ValueError(f"unknown notebook {name!r}; choose from: {', '.join(p.stem for p in available)}")
        chosen += [p for p in matches if p not in chosen]
    return sorted(chosen)


def outside_sources(out: str | os.PathLike, sources: Path = NOTEBOOK_DIR) -> Path:
    """`out` as a folder to write into, refused (a one-line ValueError) if empty or if writing there could overwrite
    the course's own files: the repository's root, the notebooks' folder or a folder inside it, or any folder whose
    notebooks/ is the notebooks' folder (a build writes its executed notebooks into <out>/notebooks/)."""
    if not str(out).strip():
        raise ValueError("--out is empty; give a folder for what is written, e.g. --out build")
    out_dir = Path(out).expanduser().resolve()
    sources = sources.resolve()
    if out_dir == REPO_ROOT or out_dir.is_relative_to(sources) or (out_dir / "notebooks").resolve() == sources:
        raise ValueError(f"--out {out_dir} would write over the course's own notebooks in {sources}; give a folder "
                         f"of its own, e.g. --out build")
    return out_dir


def prepare_out(out: str | os.PathLike | None, sources: Path = NOTEBOOK_DIR) -> Path:
    """The build folder, created and checked writable, with the folders a run writes into that exist already (a
    build folder another learner made is theirs); an empty --out, one that would overwrite the course's own
    notebooks (`outside_sources`), a file or an unwritable place is a one-line ValueError."""
    out_dir = outside_sources(build_dir() if out is None else out, sources)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder for the build")
    written = [out_dir / f for f in ("notebooks", "results", "report", "sweeps") if (out_dir / f).is_dir()]
    for folder in [out_dir, *written]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise ValueError(f"cannot write the build into {folder}: {e.strerror or e}; give a --out of your own") \
                from None
    return out_dir


def parse_value(text: str) -> Any:
    """A -p value as Python reads it (3, 0.5, True, None, "mnist,svhn"); anything else is a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(nb: Path) -> dict[str, Any]:
    """The notebook's parameters cell: name -> default value."""
    import papermill

    return {name: parse_value(p["default"]) for name, p in papermill.inspect_notebook(str(nb)).items()}


def parameter_checks(nb: Path) -> str | None:
    """The source of the cell that checks the notebook's parameters: the code cell right after the parameters cell,
    when it calls `params.check(globals(), ...)` (see `grlib.course.params`); None if the notebook has none."""
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    for cell, after in zip(cells, cells[1:]):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(after["source"])
            return source if "params.check(" in source else None
    return None


def check_ranges(nb: Path, given: dict[str, Any]) -> None:
    """Run the notebook's own parameter checks (`parameter_checks`) on its defaults updated with `given`, in this
    process, so that a value out of range is one line before any kernel starts; the rules live in the notebook
    alone. Relative paths are read from the notebook's folder, as its kernel reads them."""
    from grlib.course import params

    checks = parameter_checks(nb)
    if checks is None:
        return
    folder, last = params.base_folder.set(nb.parent), params.last
    try:
        exec(compile(checks, f"{nb.name}: its parameter checks", "exec"), {**notebook_parameters(nb), **given})
    except params.ParameterError as e:
        raise ValueError(f"{nb.stem}: {e}") from None
    finally:
        params.base_folder.reset(folder)
        params.last = last  # what this process's own notebook checked, if it is one (09 runs others)


def check_parameters(notebooks: Sequence[Path], parameters: dict[str, Any]) -> None:
    """Every parameter must be declared by a chosen notebook, of its default's type (None takes any value), and
    within the notebook's own checks (`check_ranges`); the profile is not one (it has its own --profile). Raises
    ValueError naming the parameter, before anything runs."""
    if "profile" in parameters:
        raise ValueError("the profile is chosen with --profile (e.g. --profile quick), not with -p profile")
    declared = {nb.stem: notebook_parameters(nb) for nb in notebooks}
    for name, value in parameters.items():
        owners = {stem: params[name] for stem, params in declared.items() if name in params}
        if not owners:
            listing = "; ".join(f"{stem}: {', '.join(params)}" for stem, params in declared.items())
            raise ValueError(f"no chosen notebook has a parameter {name!r}; their parameters are {listing}")
        for stem, default in owners.items():
            kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default))
            if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
                raise ValueError(f"parameter {name} = {value!r} of {stem} must be a {type(default).__name__} "
                                 f"(its default is {default!r})")
    for nb in notebooks:
        given = {name: value for name, value in parameters.items() if name in declared[nb.stem]}
        if given:
            check_ranges(nb, given)


def course_metadata(nb: Path) -> dict:
    """What the runner reads from a notebook's metadata (its "grlib" entry)."""
    return json.loads(nb.read_text()).get("metadata", {}).get("grlib", {})


def notebook_reads(nb: Path) -> list[str]:
    """The notebooks (by number) whose saved results `nb` reads: its metadata's grlib.reads. The runner starts it
    only after those of them it runs have finished."""
    return course_metadata(nb).get("reads", [])


def notebook_loads(nb: Path) -> list[str]:
    """The notebooks (by number) whose cached models `nb` loads, or trains itself if they have not run yet: its
    metadata's grlib.loads. The runner starts those before it, so that they, not `nb`, train the models."""
    return course_metadata(nb).get("loads", [])


def course_seconds(nb: Path) -> int:
    """The seconds `nb` took alone in a measured course run (its metadata's grlib.seconds; 0 if none)."""
    return course_metadata(nb).get("seconds", 0)


def queue_order(notebooks: Sequence[Path]) -> list[Path]:
    """The notebooks, those heading the longest chain first: a notebook's chain is its own seconds plus the longest
    chain among the notebooks that read its results or load its models. So what others wait for, or would train
    themselves, starts early, and the last ones end together. A stable sort keeps ties in the course's order."""
    numbers = {nb.stem[:2]: nb for nb in notebooks}
    users = {n: [u for u in notebooks if n in notebook_reads(u) + notebook_loads(u)] for n in numbers}
    chain: dict[Path, int] = {}

    def chain_seconds(nb: Path) -> int:
        if nb not in chain:
            chain[nb] = course_seconds(nb) + max(map(chain_seconds, users[nb.stem[:2]]), default=0)
        return chain[nb]

    return sorted(notebooks, key=chain_seconds, reverse=True)


def write_student_copy(out: str | os.PathLike, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks without their worked solutions (every cell tagged `solution`), for learners, written to `out`
    (never over the notebooks themselves: `outside_sources`)."""
    from nbconvert.exporters import NotebookExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    out_dir = outside_sources(out, folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = NotebookExporter()
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"solution"}), enabled=True)
    written = []
    for nb in list_notebooks(folder):
        body, _ = exporter.from_filename(str(nb))
        (out_dir / nb.name).write_text(body)
        written.append(out_dir / nb.name)
    return written
