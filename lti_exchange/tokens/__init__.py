"""Our tokens: access tokens (access) and refresh tokens with the launch token pair (refresh)."""
