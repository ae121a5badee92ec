"""The runbook's stages, each a plug-in module: importing this package registers them.

A stage module declares one ``domain.stages.StageDefinition`` and registers it; add a stage by
adding its module and one line here (see ARCHITECTURE.md, "How to add a stage").
"""

from stages import delete, disable, provision, replace  # noqa: F401  (each registers its stage)
