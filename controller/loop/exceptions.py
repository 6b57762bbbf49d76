"""Errors of the loop. Each names what to fix; the CLI prints them in one paragraph."""

from __future__ import annotations


class CampaignError(Exception):
    """The campaign cannot start or continue (bad combination of settings, changed file, ...)."""
