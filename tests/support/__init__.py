"""Helpers the tests share: wires, processes, databases, requests."""
