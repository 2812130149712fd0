"""Launching training: apex.py (the entry point) runs any registered agent as a program of
nodes on an engine (threads or Ray processes) or, under anakin, as one compiled program."""
