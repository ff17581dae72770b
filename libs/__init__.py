"""ActionMamba / ActionFormer temporal action localization."""
__version__ = "0.1.0"
