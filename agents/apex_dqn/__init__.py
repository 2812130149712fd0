"""Ape-X DQN (Horgan et al. 2018): a template agent, one file per part; builder.py is its API."""
