"""Benchmarks of cellseg, beside the pipeline: what it costs and buys on a machine.

Installed with the package (``pip install -e .``) and run as modules from the checkout:

    .venv/bin/python -m benchmarks.bench          # peaks, training, inference, peers, ...
    .venv/bin/python -m benchmarks.pipeline       # the whole pipeline, timed and scored
    .venv/bin/python -m benchmarks.report REPORT  # a report's size and time to interactive
    benchmarks/gpu_check.sh prepare|run           # the GPU recipe on a lent card
    .venv/bin/python -m benchmarks.nnunet_peer    # nnU-Net v2 on cellseg's folds

``tools`` holds the measurements and what the benchmarks share (the ISBI stacks, how a
peer's fold is scored); ``nnunet_train`` and ``nnunet_predict`` are nnU-Net's steps, each
run in a fresh interpreter by ``nnunet_peer``. The benchmarks import only ``cellseg`` and
this package; nnU-Net (optional) is imported only inside its two step modules. Results go
under ``results/bench/`` of the checkout. Nothing here asserts a time: it measures and
reports.
"""
