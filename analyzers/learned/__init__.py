"""A learned nucleus segmenter (small U-Net in torch); see :mod:`analyzers.learned.segment`."""
