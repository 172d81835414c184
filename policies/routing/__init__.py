"""Routers: pick an instance for each arriving request."""
