"""Pipeline settings: :mod:`~medseg.config.models` (pydantic, the bottom layer) and
:mod:`~medseg.config.load` (YAML, includes, overrides, argument binding through the registry)."""
