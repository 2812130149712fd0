"""The nodes of a distributed actor-learner run: replay and learner (nodes/learner.py), actors
(nodes/actor.py), the evaluator (nodes/evaluator.py).

Each node only calls the agent's builder (looked up by name in agents/registry.py) and the
environments API; none knows how it was launched. Clients of other nodes arrive as
constructor arguments (the objects themselves under local_mt, Ray clients otherwise).
"""

from launch.distributed.nodes.actor import ActorNode, VariableSourceClient, actor_seed
from launch.distributed.nodes.evaluator import EvaluatorNode
from launch.distributed.nodes.learner import LearnerNode, ReplayNode

__all__ = ["ActorNode", "EvaluatorNode", "LearnerNode", "ReplayNode", "VariableSourceClient",
           "actor_seed"]
