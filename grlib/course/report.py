"""The course report: every executed notebook as an HTML page (figures embedded) under build/report/, and an index
page that opens with the course's headline figure, the summary table, and links to the pages and to any sweeps."""
from __future__ import annotations

import base64
import html
import os
import shutil
from pathlib import Path

STYLE = ("body{font-family:sans-serif;max-width:64em;margin:2em auto;font-size:18px}td{border:1px solid #ccc;"
         "padding:4px 8px}table{border-collapse:collapse}img{max-width:100%}")


TEMPLATES = Path(__file__).parent / "templates"


def copy_mathjax(report: Path) -> str:
    """Copy the MathJax that jupyter-server-mathjax ships beside the report (once); returns the pages' MathJax URL.
    The copy is made file by file into a folder of this process's own, renamed when whole: a full disk stops it at
    the first file with an OSError naming the copy, and leaves no half copy that a later run would take for whole."""
    import jupyter_server_mathjax

    target = report / "mathjax"
    if not (target / "MathJax.js").exists():
        source = Path(jupyter_server_mathjax.__file__).parent / "static"
        partial = report / f".mathjax-{os.getpid()}"
        try:
            for file in (f for f in source.rglob("*") if f.is_file()):
                (partial / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, partial / file.relative_to(source))
            shutil.rmtree(target, ignore_errors=True)  # a half copy that an earlier version left
            partial.rename(target)
        except OSError as e:  # shutil names the file it read; what failed is the copy, in the report's folder
            raise OSError(e.errno, e.strerror, str(target)) from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def render_report(out_dir: Path, names: list[str]) -> Path:
    """Write build/report/<notebook>.html for each executed notebook in `names`, then the index page. The pages load
    nothing from outside the machine: MathJax is copied beside them, and the template leaves out RequireJS, Mermaid
    and the widget manager."""
    import nbconvert
    import nbformat
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    exporter = nbconvert.HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)])
    exporter.mathjax_url = copy_mathjax(report)
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)  # a progress bar shows as its last line
    for name in names:
        nb = nbformat.read(out_dir / "notebooks" / name, as_version=4)
        nb.metadata.pop("widgets", None)  # live widget state needs the widget manager; the figures are static anyway
        body, _ = exporter.from_notebook_node(nb)
        (report / name.replace(".ipynb", ".html")).write_text(body)
    return write_index(out_dir)


def headline_figure(out_dir: Path) -> bytes | None:
    """The first figure of the last executed notebook (notebook 09's accuracy curves when the whole course ran)."""
    import nbformat

    for path in sorted((out_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"), reverse=True):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                png = output.get("data", {}).get("image/png")
                if png:
                    return base64.b64decode(png)
    return None


def write_index(out_dir: Path) -> Path:
    """build/report/index.html from what is there: the headline figure, build/summary.md, the notebook pages and
    build/sweeps/*/index.html. No scripts: it opens offline."""
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><meta charset='utf-8'><title>Generative replay: course report</title>",
             f"<style>{STYLE}</style><h1>Generative replay for continual learning: course report</h1>"]
    figure = headline_figure(out_dir) if (out_dir / "notebooks").exists() else None
    if figure:
        (report / "headline.png").write_bytes(figure)
        parts.append('<img src="headline.png" alt="the course\'s headline figure">')
    summary = out_dir / "summary.md"
    if summary.exists():
        rows = [line.strip("|").split("|") for line in summary.read_text().splitlines()
                if line.startswith("| ") and "---" not in line]
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f"<h2>Summary</h2><table>{cells}</table>")
    pages = sorted(p for p in report.glob("[0-9][0-9]_*.html"))
    parts.append("<h2>Notebooks</h2><ul>" + "".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>'
                                                    for p in pages) + "</ul>")
    sweeps = sorted((out_dir / "sweeps").glob("*/index.html"))
    if sweeps:
        parts.append("<h2>Sweeps</h2><ul>" + "".join(
            f'<li><a href="../sweeps/{p.parent.name}/index.html">{html.escape(p.parent.name)}</a></li>' for p in sweeps)
            + "</ul>")
    (report / "index.html").write_text("".join(parts))
    return report / "index.html"
