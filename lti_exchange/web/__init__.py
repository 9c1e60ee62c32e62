"""The Flask layer: app factory, request session, bearer parsing, error handlers, body limits."""
