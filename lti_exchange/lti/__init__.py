"""LTI 1.3: the /lti views (views.py) and the protocol pieces they use."""
