"""LTI 1.3 launches through the real HTTP flow against a simulated LMS."""
