"""SAGA: workflow-atomic scheduling of agent workloads (partly reconstructed).

* ``aeg`` - Agent Execution Graphs learned online per agent type;
* ``workflow`` - the ``saga`` workflow policy (retention by reuse prediction, session
  affinity, work stealing), plus ``prefix_cache`` (vLLM) and ``fixed_ttl``;
* ``eviction`` - ``lru`` and ``saga`` (retention score) eviction of retained KV;
* ``oracle`` - the ``belady`` workflow and eviction policies, which see the true future;
* ``fair_share`` - the ``afs`` batch policy (Agent Fair Share across tenants);
* ``affinity`` - the ``session_affinity`` router (hash), the baseline's.

See ``experiments/papers/saga/README.md`` for what is reconstructed and the results.
"""
