"""Launching the distributed program: nodes, launch types (threads or Ray processes), the Ape-X run."""
