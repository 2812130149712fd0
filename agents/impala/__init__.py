"""IMPALA (Espeholt et al. 2018): actors write sequences to a Reverb queue; the learner applies V-trace."""
