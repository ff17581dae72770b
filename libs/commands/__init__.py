"""The command-line programs. Each module has a ``main(argv=None) -> int`` (the exit status).

In a checkout they run as ``python train.py``, ``python eval.py`` and ``python tools/<name>.py``
(thin launchers); after ``pip install .`` as the console scripts ``tal-train``, ``tal-eval``,
``tal-infer``, ``tal-eval-results``, ``tal-rescore``, ``tal-diagnose``, ``tal-visualize``,
``tal-make-synthetic``, ``tal-prepare-features``, ``tal-paper-table``, ``tal-multi-seed`` and
``tal-check-env`` (setup.py ``COMMANDS``).
"""
