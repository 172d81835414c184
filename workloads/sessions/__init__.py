"""Session workloads: multi-turn conversations, agent tasks and closed-loop clients.

Each generator yields ``SessionSpec`` values in arrival order; ``chains``
applies limits, the model's context, output caps and labels to them.
"""
