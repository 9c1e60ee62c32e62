"""The rules of the exchange. Nothing here imports Flask."""
