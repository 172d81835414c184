"""Performance model: how long an engine step takes on given hardware, and its power."""
