"""Launching the distributed program: nodes, launch types (threads or Ray processes), and
apex.py, the run of any registered agent."""
