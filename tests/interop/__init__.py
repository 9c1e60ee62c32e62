"""Interoperability: the tool against an LTI 1.3 platform implementation we did not write."""
