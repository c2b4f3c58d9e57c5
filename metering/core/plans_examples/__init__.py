"""Example plans, one per seed vendor model (TOML data files; see docs/plans.md).

A package (rather than a folder at the top level) so that the files ship inside the wheel and
`metering.core.plan_loading.example_plans()` finds them wherever the package is installed.
"""
