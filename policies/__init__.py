"""Decisions: routing, batching and admission policies, found through the registries.

Policies import ``simulator.policy_api`` only. Each module registers its
classes with a decorator and is also listed under the matching entry-point
group in pyproject.toml, so the simulator finds it without importing this
package by name.
"""
