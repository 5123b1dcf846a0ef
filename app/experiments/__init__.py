"""Experiments: the A/B and shadow readout from what was served (``rerank experiment report``)."""
