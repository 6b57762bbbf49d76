"""Instrument interfaces (lab units) and real drivers. Knows nothing of campaigns or planners."""
