"""A simulated LMS (LTI 1.3 platform) for the tests."""
