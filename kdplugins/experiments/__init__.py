"""Experiments: the methods' options (:mod:`.method_options`, the one builder), the papers' recipes (option files
generated from the tables' data, :mod:`.paper_tables`, by :mod:`.paper_recipes`), the speed benchmarks
(:mod:`.speed_benchmark`), the small-scale reproduction (:mod:`.reproduction`, :mod:`.reproduction_logs`,
:mod:`.reproduction_report`; ``scripts/reproduce.py`` is its command line) and paired comparisons over seeds
(:mod:`.statistics`)."""
