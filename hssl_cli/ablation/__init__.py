"""Ablations: a base recipe crossed with grid axes and seeds, one pretrain + probe per run.

``study`` defines the grid (from ``--grid`` options or an ablation file), ``runner``
executes it as ``hssl pretrain`` / ``hssl linear-probe`` processes with skip-if-done
resume, ``results`` collects the runs and writes the files, ``points`` summarises each
grid point over its seeds, ``summary_plot`` draws the figure.
"""
