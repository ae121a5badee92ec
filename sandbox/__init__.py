"""A strict local AWS organization (moto's server plus the checks moto lacks) to rehearse on."""

from __future__ import annotations

from sandbox.strict_settings import Strictness

__all__ = ["Strictness"]
