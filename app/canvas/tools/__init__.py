"""Labeling tools: one small class per tool, all sharing :class:`base.Tool`."""
