"""An example Warden plugin: `roll_dice`, a read-only lookup, and `page_oncall`, an action
with a risk tier its arguments can raise, a precondition, a dry run and an undo.

Warden finds it through the entry point in this package's pyproject.toml::

    [project.entry-points."warden.tools"]
    example = "warden_example:REGISTRY"

Copy this package to start your own (README.md walks through it).
"""

from warden_example.tools import REGISTRY

__all__ = ["REGISTRY"]
