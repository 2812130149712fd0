"""The actor-learner program of nodes (local_mt, local_mp, ray): driver.py wires the nodes
(nodes/) from the agent's builder into a program (program.py) and runs it on an engine
(threads: thread_engine.py; Ray processes: ray_engine.py; what they share: engine.py)."""
