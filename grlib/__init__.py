"""grlib: the thin library behind the generative-replay course, in four layers, each importing only from those
listed below it:

    grlib.course      the course's tooling: the notebook runner, sweeps, benchmarks, the record, reports, widgets
    grlib.continual   continual learning: data streams, buffers, the loop, metrics, strategies, recipes, tuned settings
    grlib.models      the networks and generators: solvers, UNet, WGAN-GP, DDPM, samplers, guidance, EMA
    grlib.core        what all of them use: where files live, seeds, guards, progress bars, the checkpoint cache

Importing grlib changes nothing in the process; `grlib.core.threads.start()` begins sharing the cores."""
