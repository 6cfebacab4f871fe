"""Farmstand: order tracking and fulfilment for farmers' markets."""

__version__ = "0.1.0"
