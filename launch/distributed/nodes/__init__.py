"""The nodes of a distributed actor-learner run: the replay (nodes/replay.py), the learner
(nodes/learner.py), actors (nodes/actor.py) and the evaluator (nodes/evaluator.py).

Each node only calls the agent's builder (looked up by name in agents/registry.py), the
environments API and the run layer (launch/run/); none knows how it was launched. Clients of
other nodes arrive as constructor arguments (the objects themselves under local_mt, Ray
clients otherwise).
"""

from launch.distributed.nodes.actor import ActorNode, VariableSourceClient, actor_seed
from launch.distributed.nodes.evaluator import EvaluatorNode
from launch.distributed.nodes.learner import LearnerNode
from launch.distributed.nodes.replay import ReplayNode, admissible_samples

__all__ = ["ActorNode", "EvaluatorNode", "LearnerNode", "ReplayNode", "VariableSourceClient",
           "actor_seed", "admissible_samples"]
