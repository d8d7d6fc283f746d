"""Experiments: the papers' recipes (option files generated from data, :mod:`.paper_recipes`), the small-scale
reproduction (:mod:`.reproduction`, :mod:`.reproduction_logs`, :mod:`.reproduction_report`; ``scripts/reproduce.py``
is its command line) and paired comparisons over seeds (:mod:`.statistics`)."""
