"""The agents launch/ can run, by name: each value offers the builder functions of agents/apex_dqn/builder.py."""

from agents.apex_dqn import builder as apex_dqn_builder

AGENTS = {
    "apex_dqn": apex_dqn_builder,
}
