"""The course's tooling: `python -m grlib` (`cli`), the notebook runner (`runner`, `notebooks`), sweeps, benchmarks
and tuning (`sweep`, `bench`, `tune`), the record and the papers' numbers (`record`, `papers`), results, reports,
notebook parameters, plots and widgets."""
