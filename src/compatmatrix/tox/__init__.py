"""tox integration: one tox environment per cell, plus compat-matrix, compat-report,
compat-gate and compat-ci (:mod:`.envs` says what each runs; :mod:`.plugin` is the tox 4
plugin, loaded through the ``tox`` entry point, that needs tox itself)."""
