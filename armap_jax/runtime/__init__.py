"""Process-level runtime knobs: XLA CPU compiler options and malloc tuning.

Library code reads none of these from flags: launchers call
`hostmem.tune_malloc()` and jitted steps ask `xla_options` for compiler
options.
"""
